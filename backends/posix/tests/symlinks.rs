//! The symlink policy with paths resolved by the kernel (`openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`).

mod symlink_policy;

#[tokio::test]
async fn symlinks_are_never_followed() {
    symlink_policy::check().await;
}
