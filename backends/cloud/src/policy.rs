//! Which policy (and so which store and which timings) applies to an archive key. Swift objects are
//! keys `<swift root>/<account>/<container>/<object>`; Pacifica files are the other keys, named by
//! `id2filename` (or the plain id), decoded back to the id to test the policy's id range.

use crate::config::PolicyConfig;

/// How the server names files, so that keys can be matched against policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    /// The Swift root directory (`[swift] root`).
    pub swift_root: String,
    /// Pacifica ids are mapped through `id2filename`.
    pub use_id2filename: bool,
}

/// What a key is, as far as policies are concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyKind<'a> {
    /// A Swift object.
    Swift {
        /// Account.
        account: &'a str,
        /// Container.
        container: &'a str,
        /// Object name.
        object: &'a str,
    },
    /// A Pacifica file.
    Pacifica {
        /// Its id.
        id: i128,
    },
    /// Neither (server bookkeeping, files put there by other means).
    Other,
}

impl KeySpace {
    /// Classifies `key`.
    pub fn kind<'a>(&self, key: &'a str) -> KeyKind<'a> {
        if let Some(rest) = key
            .strip_prefix(self.swift_root.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            let mut parts = rest.splitn(3, '/');
            return match (parts.next(), parts.next(), parts.next()) {
                (Some(account), Some(container), Some(object)) => KeyKind::Swift {
                    account,
                    container,
                    object,
                },
                _ => KeyKind::Other,
            };
        }
        let id = if self.use_id2filename {
            decode_id2filename(key)
        } else {
            archive_core::parse_id(key).ok()
        };
        match id {
            Some(id) => KeyKind::Pacifica { id },
            None => KeyKind::Other,
        }
    }
}

/// The id whose `id2filename` is `key` (without its leading `/`), if any.
fn decode_id2filename(key: &str) -> Option<i128> {
    let last = key.rsplit('/').next()?;
    let hex = last.strip_prefix("file.").unwrap_or(last);
    let (negative, digits) = match hex.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, hex),
    };
    if digits.is_empty()
        || !digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, 16).ok()?;
    let id = if negative { -magnitude } else { magnitude };
    // Only the canonical name of the id: anything else is not a Pacifica file.
    (archive_core::id2filename(id) == format!("/{key}")).then_some(id)
}

/// Whether `policy` selects `key`.
pub fn selects(policy: &PolicyConfig, space: &KeySpace, key: &str) -> bool {
    if let Some(prefix) = &policy.key_prefix {
        if key.starts_with(prefix.as_str()) {
            let name = key.rsplit('/').next().unwrap_or(key);
            return !excluded(policy, name);
        }
    }
    let kind = space.kind(key);
    let name = match kind {
        KeyKind::Swift {
            account,
            container,
            object,
        } => {
            let account_ok = policy.account.as_deref() == Some(account);
            let container_ok = policy.container.as_deref().is_none_or(|c| c == container);
            if !(account_ok && container_ok) {
                return false;
            }
            object
        }
        KeyKind::Pacifica { id } => match policy.ids {
            Some([first, last]) if (first as i128..=last as i128).contains(&id) => {
                key.rsplit('/').next().unwrap_or(key)
            }
            _ => return false,
        },
        KeyKind::Other => return false,
    };
    !excluded(policy, name)
}

/// Whether `policy` may select some key starting with `prefix` (conservative: `true` when unsure).
pub fn may_select_under(policy: &PolicyConfig, space: &KeySpace, prefix: &str) -> bool {
    if let Some(key_prefix) = &policy.key_prefix {
        if key_prefix.starts_with(prefix) || prefix.starts_with(key_prefix.as_str()) {
            return true;
        }
    }
    let root = format!("{}/", space.swift_root);
    let in_swift = prefix.starts_with(&root);
    if policy.ids.is_some() && !in_swift {
        return true;
    }
    let Some(account) = &policy.account else {
        return false;
    };
    if !in_swift {
        return root.starts_with(prefix);
    }
    let mut parts = prefix[root.len()..].split('/');
    // A part followed by `/` is complete; the last part may be a partial name.
    let complete: Vec<&str> = {
        let all: Vec<&str> = parts.by_ref().collect();
        all[..all.len() - 1].to_vec()
    };
    match complete.as_slice() {
        [] => true,
        [a] => a == account,
        [a, c, ..] => a == account && policy.container.as_deref().is_none_or(|pc| pc == *c),
    }
}

fn excluded(policy: &PolicyConfig, name: &str) -> bool {
    policy
        .exclude_pattern
        .as_deref()
        .is_some_and(|pattern| glob_matches(pattern, name))
}

/// `*` matches any run of characters (also `/`), `?` one character, everything else itself.
pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matcher with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn space(use_id2filename: bool) -> KeySpace {
        KeySpace {
            swift_root: ".swift".into(),
            use_id2filename,
        }
    }

    #[test]
    fn keys_are_classified() {
        let s = space(true);
        assert_eq!(
            s.kind(".swift/AUTH_a/c/o/p"),
            KeyKind::Swift {
                account: "AUTH_a",
                container: "c",
                object: "o/p"
            }
        );
        assert_eq!(s.kind("39/3039"), KeyKind::Pacifica { id: 12345 });
        assert_eq!(s.kind("file.1"), KeyKind::Pacifica { id: 1 });
        assert_eq!(s.kind("10/-10"), KeyKind::Pacifica { id: -16 });
        assert_eq!(s.kind("3039"), KeyKind::Other);
        assert_eq!(space(false).kind("12345"), KeyKind::Pacifica { id: 12345 });
    }

    #[test]
    fn policies_select_by_container_and_id_range_minus_exclusions() {
        let s = space(true);
        let policy = PolicyConfig {
            store: "s".into(),
            account: Some("AUTH_a".into()),
            container: Some("c".into()),
            ids: Some([10, 20]),
            exclude_pattern: Some("*.tmp".into()),
            ..PolicyConfig::default()
        };
        assert!(selects(&policy, &s, ".swift/AUTH_a/c/x"));
        assert!(!selects(&policy, &s, ".swift/AUTH_a/c/x.tmp"));
        assert!(!selects(&policy, &s, ".swift/AUTH_a/d/x"));
        assert!(!selects(&policy, &s, ".swift/AUTH_b/c/x"));
        assert!(selects(&policy, &s, "file.a"));
        assert!(!selects(&policy, &s, "file.9"));
        assert!(!selects(&policy, &s, "file.15"));
    }

    #[test]
    fn listings_ask_only_the_policies_that_can_select_below_the_prefix() {
        let s = space(true);
        let container = PolicyConfig {
            store: "s".into(),
            account: Some("AUTH_a".into()),
            container: Some("c".into()),
            ..PolicyConfig::default()
        };
        assert!(may_select_under(&container, &s, ""));
        assert!(may_select_under(&container, &s, ".swift/AUTH_a/c/"));
        assert!(may_select_under(&container, &s, ".swift/AUTH_a/c/x"));
        assert!(may_select_under(&container, &s, ".swift/AUTH_a/"));
        assert!(!may_select_under(&container, &s, ".swift/AUTH_a/d/"));
        assert!(!may_select_under(&container, &s, ".swift/AUTH_b/c/"));
        assert!(!may_select_under(&container, &s, "39/"));
        let ids = PolicyConfig {
            store: "s".into(),
            ids: Some([1, 2]),
            ..PolicyConfig::default()
        };
        assert!(may_select_under(&ids, &s, "39/"));
        assert!(!may_select_under(&ids, &s, ".swift/AUTH_a/c/"));
    }

    #[test]
    fn globs() {
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b?c", "axxbyc"));
        assert!(!glob_matches("a*b?c", "axxbc"));
        assert!(glob_matches("*.tmp", "dir/x.tmp"));
        assert!(!glob_matches("*.tmp", "x.tmpl"));
    }
}
