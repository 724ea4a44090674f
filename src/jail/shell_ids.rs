//! Which uids a root sandlot's shell runs take: ids the current user namespace maps, or the
//! kernel refuses them (chown of the run's working directory fails with EINVAL).
//!
//! On a host (or any namespace mapping the whole id space) a run takes [`SHELL_UID_BASE`] plus
//! its supervisor's pid, far above any account the host has, and unique while the run lives.
//! Root of a container's user namespace usually has only 65536 ids (podman `--uidmap
//! 0:100000:65536`, Kubernetes `hostUsers: false`); there a run takes an id from the upper
//! half of the largest mapped extent, away from root, the system's low ids and the configured
//! child uid and gid, at `base + pid % size`. Two live runs share a uid only when their pids
//! are congruent modulo `size` (impossible while the namespace's `pid_max` is at most `size`,
//! 32768 by default); they then share their RLIMIT_NPROC budget, nothing else (each run has
//! its own mount and pid namespaces).

use std::io;

use super::JailError;

/// The first uid of the range shell runs take where the namespace maps it.
pub const SHELL_UID_BASE: u32 = 2_000_000_000;
/// The largest `pid_max` Linux allows: [`SHELL_UID_BASE`] + any pid must be mapped.
const PID_MAX_LIMIT: u32 = 1 << 22;
/// Below this, ids belong to the system's own accounts.
const FIRST_ORDINARY_ID: u32 = 1000;
/// `(uid_t)-1` on a 16-bit view: never a real account.
const NO_ID_16: u32 = 65535;

/// The uids shell runs take: `base + pid % size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellIds {
    base: u32,
    size: u32,
}

impl ShellIds {
    /// In the shell zygote, before it is jailed: from /proc/self/uid_map and gid_map. Fails if
    /// `child_gid`, the group runs take, is not mapped, or no range of ids is left.
    pub fn from_maps(child_uid: u32, child_gid: u32) -> Result<Self, JailError> {
        let read = |file| {
            std::fs::read_to_string(format!("/proc/self/{file}"))
                .and_then(|text| parse_map(&text))
                .map_err(JailError::ReadIdMap)
        };
        let (uids, gids) = (read("uid_map")?, read("gid_map")?);
        if !maps(&gids, child_gid, 1) {
            return Err(JailError::UnmappedChildGid(child_gid));
        }
        choose(&uids, &[child_uid, child_gid]).ok_or(JailError::NoShellUids)
    }

    pub fn uid_for(self, pid: u32) -> u32 {
        self.base + pid % self.size
    }
}

/// An extent of an id map: `count` ids from `first`, as seen inside the namespace.
#[derive(Debug, Clone, Copy)]
struct Extent {
    first: u32,
    count: u32,
}

fn parse_map(text: &str) -> io::Result<Vec<Extent>> {
    text.lines()
        .map(|line| {
            let fields: Vec<u32> = line
                .split_whitespace()
                .map(str::parse)
                .collect::<Result<_, _>>()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            match fields[..] {
                [first, _outside, count] => Ok(Extent { first, count }),
                _ => Err(io::Error::new(io::ErrorKind::InvalidData, line.to_owned())),
            }
        })
        .collect()
}

/// Whether `count` ids from `first` lie in one extent.
fn maps(map: &[Extent], first: u32, count: u32) -> bool {
    map.iter().any(|e| {
        first >= e.first
            && u64::from(first) + u64::from(count) <= u64::from(e.first) + u64::from(e.count)
    })
}

fn choose(uids: &[Extent], avoid: &[u32]) -> Option<ShellIds> {
    if maps(uids, SHELL_UID_BASE, PID_MAX_LIMIT) {
        return Some(ShellIds {
            base: SHELL_UID_BASE,
            size: PID_MAX_LIMIT,
        });
    }
    let largest = uids.iter().max_by_key(|e| e.count)?;
    let end = u64::from(largest.first) + u64::from(largest.count);
    let start =
        (u64::from(largest.first) + u64::from(largest.count / 2)).max(u64::from(FIRST_ORDINARY_ID));
    // The longest stretch of [start, end) that holds none of the ids to avoid.
    let mut cuts: Vec<u64> = avoid
        .iter()
        .chain([&NO_ID_16, &0])
        .map(|&id| u64::from(id))
        .filter(|id| (start..end).contains(id))
        .collect();
    cuts.sort_unstable();
    let mut best = (start, start);
    let mut from = start;
    for cut in cuts.into_iter().chain([end]) {
        if cut.saturating_sub(from) > best.1 - best.0 {
            best = (from, cut);
        }
        from = cut + 1;
    }
    let size = u32::try_from(best.1 - best.0).ok().filter(|&n| n > 0)?;
    Some(ShellIds {
        base: u32::try_from(best.0).ok()?,
        size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(map: &str, avoid: &[u32]) -> Option<ShellIds> {
        choose(&parse_map(map).unwrap(), avoid)
    }

    #[test]
    fn a_host_keeps_the_high_range() {
        let host = ids("         0          0 4294967295\n", &[65534]).unwrap();
        assert_eq!(host.uid_for(1234), SHELL_UID_BASE + 1234);
    }

    #[test]
    fn a_container_takes_the_upper_half_without_the_child_ids() {
        let small = ids("0 100000 65536\n", &[65534, 65534]).unwrap();
        assert_eq!(
            small,
            ShellIds {
                base: 32768,
                size: 65534 - 32768
            }
        );
        for pid in [1, 32765, 32766, 4_000_000] {
            let uid = small.uid_for(pid);
            assert!((32768..65534).contains(&uid), "{uid}");
        }
    }

    #[test]
    fn the_largest_extent_wins_and_low_ids_are_skipped() {
        let map = "0 100000 1\n1 200000 1500\n";
        let chosen = ids(map, &[65534]).unwrap();
        assert_eq!(
            chosen,
            ShellIds {
                base: 1000,
                size: 501
            }
        );
        assert_eq!(ids("0 0 1\n", &[]), None);
    }
}
