//! A zygote that dies is restarted; the runs it held get `internal` at once, never a hang.

mod common;

use std::time::{Duration, Instant};

use common::processes::{wait_for_busy_child, zygote_pid};
use serde_json::json;

#[test]
fn a_killed_zygote_fails_its_runs_fast_and_comes_back() {
    let server = common::start(&[], &[]);
    let server = &*Box::leak(Box::new(server));
    for kind in ["python", "javascript"] {
        let pid = zygote_pid(server, kind).expect("zygote pid in /readyz");
        // A busy loop, so that the run is seen running before its zygote is killed.
        let code = if kind == "python" {
            "def main():\n    while True:\n        pass\n"
        } else {
            "function main() { for (;;) {} }"
        };
        let body =
            json!({"language": kind, "code": code, "limits": {"timeout_ms": 30000}}).to_string();
        let started = Instant::now();
        let in_flight = std::thread::spawn(move || server.post("/v1/run", &body, &[]));
        wait_for_busy_child(pid, Duration::from_secs(10));
        common::processes::kill(pid);
        let reply = in_flight.join().unwrap();
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.body["error"]["kind"], "internal", "{}", reply.text);
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );

        // The next run waits for the restarted zygote and succeeds.
        let r = server.run(json!({"language": kind,
            "code": if kind == "python" { "def main():\n    return {'back': True}\n" } else { "function main() { return {back: true} }" }}));
        assert_eq!(r["result"]["back"], true, "{r}");
        let new_pid = zygote_pid(server, kind).unwrap();
        assert_ne!(new_pid, pid);
        let ready = server.get("/readyz");
        let restarts = ready.body["zygotes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|z| z["kind"] == kind)
            .unwrap()["restarts"]
            .as_u64()
            .unwrap();
        assert!(restarts >= 1);
    }
}
