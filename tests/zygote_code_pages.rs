//! A Python zygote copies libpython's machine code and constants into huge pages before it
//! forks (`zygote/huge_pages.rs`), so that its children inherit them whole instead of faulting
//! them in page by page; the JavaScript zygote, whose children never call libpython, keeps no
//! such copy, and its children map none of libpython's code at all
//! (`zygote/unused_library_data.rs`). Checked in a child waiting in each pool, as /proc shows
//! it.

mod common;

use std::time::Duration;

use common::processes;

/// One mapping of /proc/PID/smaps: its permissions, file (empty when anonymous) and the kB of
/// it in huge pages.
struct Mapping {
    perms: String,
    path: String,
    huge_kb: u64,
}

fn mappings(pid: i32) -> Option<Vec<Mapping>> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut list: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // A mapping's first line starts with its address range; its fields' lines with a name.
        let is_range = fields.first().is_some_and(|first| {
            first.split_once('-').is_some_and(|(a, b)| {
                u64::from_str_radix(a, 16).is_ok() && u64::from_str_radix(b, 16).is_ok()
            })
        });
        if is_range {
            list.push(Mapping {
                perms: fields[1].to_owned(),
                path: fields.get(5).unwrap_or(&"").to_string(),
                huge_kb: 0,
            });
            continue;
        }
        if fields.first() == Some(&"AnonHugePages:") {
            if let Some(last) = list.last_mut() {
                last.huge_kb = fields[1].parse().unwrap_or(0);
            }
        }
    }
    Some(list)
}

/// In `pid`: the kB of executable anonymous memory in huge pages (copies of machine code), and
/// whether any of libpython's code is mapped from its file. `None` if libpython (its headers,
/// at least) is not mapped (a child gone, or going, since it was listed).
fn code_pages(pid: i32) -> Option<(u64, bool)> {
    let list = mappings(pid)?;
    if !list.iter().any(|m| m.path.contains("libpython")) {
        return None;
    }
    let huge = list
        .iter()
        .filter(|m| m.path.is_empty() && m.perms == "r-xp")
        .map(|m| m.huge_kb)
        .sum();
    let from_file = list
        .iter()
        .any(|m| m.path.contains("libpython") && m.perms == "r-xp");
    Some((huge, from_file))
}

/// [`code_pages`] of a child waiting in the pool of the zygote of `kind` (asleep on its
/// channel; the last run's child may still be exiting).
fn pooled_child_code_pages(server: &common::Server, kind: &str) -> (u64, bool) {
    let zygote = processes::zygote_pid(server, kind).expect("the zygote is up");
    common::wait_for(
        Duration::from_secs(10),
        || format!("a child in the {kind} pool"),
        || {
            processes::children(zygote)
                .into_iter()
                .filter(|&(_, state)| state == 'S')
                .find_map(|(pid, _)| code_pages(pid))
        },
    )
}

#[test]
fn python_children_inherit_libpython_s_code_in_huge_pages_and_javascript_children_have_none() {
    let server = common::shared();
    let sum = server.python(
        "def main(a, b):\n    return {'sum': a + b}",
        serde_json::json!({"a": 1, "b": 2}),
    );
    assert_eq!(sum["result"]["sum"], 3, "{sum}");
    let javascript = server.javascript(
        "function main() { return {ok: true} }",
        serde_json::json!({}),
    );
    assert_eq!(javascript["result"]["ok"], true, "{javascript}");

    // Both carry sandlot's own code in huge pages; a Python child at least one block of
    // libpython's code besides (its read-only segments span over 6 MB: wherever it is loaded,
    // a whole 2 MiB block of them holds code).
    let (python_huge, _) = pooled_child_code_pages(server, "python");
    let (javascript_huge, javascript_from_file) = pooled_child_code_pages(server, "javascript");
    assert!(
        python_huge >= javascript_huge + 2048,
        "code in huge pages: {python_huge} kB in a Python child, {javascript_huge} kB in a \
         JavaScript one"
    );
    assert!(
        !javascript_from_file,
        "a JavaScript child maps none of libpython's code: its zygote keeps it out of children"
    );
}
