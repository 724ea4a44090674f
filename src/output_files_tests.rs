use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use super::*;
use crate::output_region::{create, file_size, files_area, Writer};

const LIMIT: usize = 64;

/// A child's writer over a fresh output file, and the file as the server holds it.
/// Caps of `cap` bytes together and none of one file's own.
fn fresh(cap: u64) -> (FilesWriter, std::fs::File) {
    fresh_with(Caps {
        total: cap,
        file: u64::MAX,
    })
}

fn fresh_with(caps: Caps) -> (FilesWriter, std::fs::File) {
    let file = create(file_size(LIMIT as u64, caps.total)).unwrap();
    let (_, files) = Writer::map(file.as_raw_fd(), LIMIT, false, caps).unwrap();
    (files, std::fs::File::from(file))
}

fn replay(file: &std::fs::File, cap: u64) -> FilesLog {
    replay_with(
        file,
        Caps {
            total: cap,
            file: u64::MAX,
        },
    )
}

fn replay_with(file: &std::fs::File, caps: Caps) -> FilesLog {
    let mut log = FilesLog::default();
    log.catch_up(file, files_area(LIMIT) as u64, area_size(caps.total), caps)
        .unwrap();
    log
}

#[test]
fn one_file_past_its_own_cap_is_refused_and_the_server_sees_which_cap() {
    let caps = Caps {
        total: 1024,
        file: 10,
    };
    let (mut files, file) = fresh_with(caps);
    let a = files.create("a.txt").unwrap();
    files.write(a, 0, b"0123456789").unwrap();
    assert_eq!(
        files.write(a, 10, b"x"),
        Err(Refused::Cap(CapHit::FileBytes))
    );
    let b = files.create("b.txt").unwrap();
    files.write(b, 0, b"still fits").unwrap();
    let log = replay_with(&file, caps);
    assert_eq!(log.cap_hit, Some(CapHit::FileBytes));
    assert_eq!(log.file(1).unwrap().bytes, b"still fits");
    // A forged record past one file's cap is refused by the server too.
    let wide = Caps {
        total: 1024,
        file: 1024,
    };
    let (mut files, file) = fresh_with(wide);
    let a = files.create("a.txt").unwrap();
    files.write(a, 0, &[7; 20]).unwrap();
    let log = replay_with(&file, caps);
    assert_eq!(log.cap_hit, Some(CapHit::FileBytes));
    assert!(log.file(0).unwrap().bytes.is_empty());
}

#[test]
fn what_a_child_writes_is_replayed_with_overwrites_and_recreations() {
    let (mut files, file) = fresh(1024);
    let a = files.create("a.txt").unwrap();
    files.write(a, 0, b"hello world").unwrap();
    files.write(a, 6, b"there").unwrap();
    let b = files.create("b.bin").unwrap();
    files.write(b, 4, &[1, 2]).unwrap();
    files.close(b).unwrap();
    // Opened again for writing: it starts empty.
    assert_eq!(files.create("a.txt").unwrap(), a);
    files.write(a, 0, b"new").unwrap();
    let written = replay(&file, 1024).into_files();
    assert_eq!(
        written,
        vec![
            WrittenFile {
                name: "a.txt".into(),
                bytes: b"new".to_vec()
            },
            WrittenFile {
                name: "b.bin".into(),
                bytes: vec![0, 0, 0, 0, 1, 2]
            },
        ]
    );
}

#[test]
fn the_caps_refuse_writes_and_say_which_was_hit() {
    let (mut files, file) = fresh(10);
    let a = files.create("a").unwrap();
    files.write(a, 0, b"12345678").unwrap();
    assert_eq!(files.write(a, 8, b"abc"), Err(Refused::Cap(CapHit::Bytes)));
    // Rewriting within what the file holds is no growth.
    files.write(a, 0, b"xy").unwrap();
    let log = replay(&file, 10);
    assert_eq!(log.cap_hit, Some(CapHit::Bytes));
    assert_eq!(log.into_files()[0].bytes, b"xy345678".to_vec());

    let (mut files, file) = fresh(1 << 20);
    for i in 0..MAX_FILES {
        files.create(&format!("f{i}")).unwrap();
    }
    assert_eq!(files.create("one more"), Err(Refused::Cap(CapHit::Count)));
    let log = replay(&file, 1 << 20);
    assert_eq!(log.cap_hit, Some(CapHit::Count));
    assert_eq!(log.into_files().len(), MAX_FILES);
}

#[test]
fn names_that_are_not_plain_file_names_are_refused() {
    let (mut files, _) = fresh(100);
    for name in ["", ".", "..", "a/b", "../x", "a\0b", "a\nb"] {
        assert!(
            matches!(files.create(name), Err(Refused::Name(_))),
            "{name:?}"
        );
    }
}

#[test]
fn forged_records_stop_the_replay_and_cannot_pass_the_caps() {
    let (mut files, file) = fresh(100);
    let a = files.create("a").unwrap();
    files.write(a, 0, b"kept").unwrap();
    let area = files_area(LIMIT) as u64;
    // The child's word: a write far past the cap, appended by hand, and the length bumped.
    let used = u64::from_le_bytes({
        let mut w = [0u8; 8];
        file.read_exact_at(&mut w, area).unwrap();
        w
    });
    let mut forged = vec![WRITE, 0, 0, 0];
    forged.extend_from_slice(&0u32.to_le_bytes());
    forged.extend_from_slice(&(1u64 << 40).to_le_bytes());
    forged.extend_from_slice(&4u32.to_le_bytes());
    forged.extend_from_slice(b"evil");
    file.write_all_at(&forged, area + used).unwrap();
    file.write_all_at(&(used + 32).to_le_bytes(), area).unwrap();
    let log = replay(&file, 100);
    assert_eq!(log.cap_hit, Some(CapHit::Bytes));
    assert_eq!(log.into_files()[0].bytes, b"kept".to_vec());

    // A length past the area is clamped to it; garbage is a broken record, not a panic.
    let (_, file) = fresh(100);
    file.write_all_at(&u64::MAX.to_le_bytes(), area).unwrap();
    file.write_all_at(&[0xff; 64], area + 16).unwrap();
    assert!(replay(&file, 100).into_files().is_empty());
}

#[test]
fn a_streamed_run_reads_on_from_where_it_was() {
    let (mut files, file) = fresh(1024);
    let mut log = FilesLog::default();
    let (area, size) = (files_area(LIMIT) as u64, area_size(1024));
    let caps = Caps {
        total: 1024,
        file: 1024,
    };
    let a = files.create("a.csv").unwrap();
    files.write(a, 0, b"x,y\n").unwrap();
    assert!(log.catch_up(&file, area, size, caps).unwrap().is_empty());
    files.write(a, 4, b"1,2\n").unwrap();
    files.close(a).unwrap();
    assert_eq!(log.catch_up(&file, area, size, caps).unwrap(), vec![0]);
    assert_eq!(log.file(0).unwrap().bytes, b"x,y\n1,2\n".to_vec());
}
