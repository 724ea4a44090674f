use super::*;

#[test]
fn frames_round_trip_and_oversize_or_unknown_is_refused() {
    let mut buf = Vec::new();
    write_frame(&mut buf, FrameTag::Report, b"hello").unwrap();
    let (tag, payload) = read_frame(&mut &buf[..], 16).unwrap();
    assert_eq!((tag, payload.as_slice()), (FrameTag::Report, &b"hello"[..]));
    let err = read_frame(&mut &buf[..], 4).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    buf[4] = b'?';
    let err = read_frame(&mut &buf[..], 16).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn every_report_constructor_serializes() {
    for report in [
        ChildReport::internal("x"),
        ChildReport::memory_limit(64),
        ChildReport::finished(None, 0, None, Vec::new()),
    ] {
        let back: ChildReport = serde_json::from_slice(&report.to_json()).unwrap();
        assert_eq!(back.exit_code, report.exit_code);
    }
}

#[test]
fn a_standard_rule_is_named_in_a_job_as_the_python_zygote_knows_it() {
    for rule in StandardRule::ALL {
        let policy = ImportPolicy::StandardLibrary {
            rule,
            operator: vec![],
        };
        let job = serde_json::to_value(&policy).unwrap();
        assert_eq!(job["rule"], rule.name(), "{job}");
    }
}
