//! Who the lab's processes run as: least privilege, like the real images.
//!
//! The lab itself must be root (namespaces, TUN devices, `setns`), but what it starts in the
//! namespaces need not be: curl and other client tools run as `nobody` (the child enters its
//! namespace first, then drops its groups, gid and uid before `exec`), and nginx's workers
//! run as Debian's `www-data` (the `user` directive; the master keeps root to bind port 80
//! and to reopen logs), falling back to `nobody` where there is no `www-data`.
//! Users and groups come from NSS via [`nix::unistd::User`] / [`nix::unistd::Group`].

use nix::unistd::{Gid, Group, Uid, User};

use super::{Error, Result};

/// The uid/gid 65534 of `nobody`/`nogroup` when NSS has no `nobody` entry.
const OVERFLOW_ID: u32 = 65534;

/// A user to run a process as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// User name (`nobody`, `www-data`).
    pub user: String,
    /// Its primary group's name (`nogroup`, `www-data`).
    pub group: String,
    /// uid.
    pub uid: u32,
    /// Primary gid.
    pub gid: u32,
}

impl Identity {
    /// The user `name` from NSS (`None` if there is no such user).
    pub fn lookup(name: &str) -> Result<Option<Identity>> {
        let user = User::from_name(name)
            .map_err(|e| Error::Invalid(format!("looking up user {name}: {e}")))?;
        Ok(user.map(|u| {
            let group = Group::from_gid(u.gid)
                .ok()
                .flatten()
                .map(|g| g.name)
                .unwrap_or_else(|| u.gid.to_string());
            Identity {
                user: u.name,
                group,
                uid: u.uid.as_raw(),
                gid: u.gid.as_raw(),
            }
        }))
    }

    /// `nobody` (uid/gid 65534 if NSS does not know it).
    pub fn nobody() -> Result<Identity> {
        Ok(Identity::lookup("nobody")?.unwrap_or_else(|| Identity {
            user: "nobody".into(),
            group: OVERFLOW_ID.to_string(),
            uid: OVERFLOW_ID,
            gid: OVERFLOW_ID,
        }))
    }

    /// What client tools and extra pod servers run as: `nobody`.
    pub fn unprivileged() -> Result<Identity> {
        Identity::nobody()
    }

    /// nginx's worker user: `www-data` (Debian's nginx), else `nobody`.
    pub fn nginx_worker() -> Result<Identity> {
        match Identity::lookup("www-data")? {
            Some(id) => Ok(id),
            None => Identity::nobody(),
        }
    }

    /// `true` for root (uid 0).
    pub fn is_root(&self) -> bool {
        Uid::from_raw(self.uid).is_root()
    }

    /// Drops to this identity: supplementary groups, gid, uid, in that order. Only
    /// async-signal-safe syscalls: meant for a `pre_exec` hook, after the namespace is
    /// entered (`setns` needs the privileges this gives up).
    pub fn drop_privileges(&self) -> std::io::Result<()> {
        let (uid, gid) = (Uid::from_raw(self.uid), Gid::from_raw(self.gid));
        // SAFETY: plain syscalls with valid arguments (an empty group list).
        unsafe {
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(gid.as_raw()) != 0
                || libc::setuid(uid.as_raw()) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nobody_is_unprivileged() {
        let n = Identity::nobody().unwrap();
        assert_eq!(n.user, "nobody");
        assert!(!n.is_root());
        assert_ne!(n.gid, 0);
        let w = Identity::nginx_worker().unwrap();
        assert!(!w.is_root(), "{w:?}");
        assert!(w.user == "www-data" || w.user == "nobody", "{w:?}");
        assert_eq!(Identity::lookup("no-such-user-nplab").unwrap(), None);
        let root = Identity::lookup("root").unwrap().unwrap();
        assert!(root.is_root());
        assert_eq!(root.group, "root");
    }
}
