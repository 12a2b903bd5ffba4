//! The symlink policy with paths resolved by the `O_NOFOLLOW` component walk, as on kernels without
//! `openat2`. A test binary of its own: forcing the walk is process-wide.

mod symlink_policy;

#[tokio::test]
async fn symlinks_are_never_followed_without_openat2() {
    archive_posix::force_component_walk();
    symlink_policy::check().await;
}
