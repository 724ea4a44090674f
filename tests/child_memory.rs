//! A child's new memory comes from a region of its own (`zygote::fresh_memory`): blocks of it
//! are given out again when freed, grown by copying, zeroed when asked for zeros, and a run
//! that outgrows it goes on in glibc's heap. These runs make all of that happen in real
//! QuickJS and CPython children and check every byte they can see.

mod common;

use serde_json::{json, Value};

fn ok(language: &str, code: &str) -> Value {
    let r = common::shared().run(json!({"language": language, "code": code, "inputs": {}}));
    assert_eq!(r["ok"], true, "{code}\n{r}");
    r["result"].clone()
}

/// Objects kept by the runs below: every 7th of 20,000, with `i % 40` properties each.
fn kept_keys() -> u64 {
    (0..20_000u64).filter(|i| i % 7 == 0).map(|i| i % 40).sum()
}

#[test]
fn javascript_memory_given_out_again_grown_and_zeroed_keeps_its_bytes() {
    let r = ok(
        "javascript",
        "function main() {
           // Each array is freed before the next takes a block of its size: zeros every time.
           let nonzero = 0;
           for (let i = 0; i < 300; i++) {
             const bytes = new Uint8Array(3000);
             for (const v of bytes) if (v) nonzero++;
             bytes.fill(255);
           }
           // Grown well past the region (1 MiB), by copying.
           let text = '';
           for (let i = 0; i < 300000; i++) text += String.fromCharCode(97 + i % 26);
           let letters = true;
           for (let i = 0; i < text.length; i += 997) if (text.charCodeAt(i) !== 97 + i % 26) letters = false;
           const xs = [];
           for (let i = 0; i < 300000; i++) xs.push(i * 3);
           let sum = 0;
           for (const x of xs) sum += x;
           // Objects of every small size made and dropped, some kept.
           const kept = [];
           for (let i = 0; i < 20000; i++) {
             const o = {};
             for (let k = 0; k < i % 40; k++) o['k' + k] = k;
             if (i % 7 === 0) kept.push(o);
           }
           let keys = 0;
           for (const o of kept) keys += Object.keys(o).length;
           return {nonzero, length: text.length, letters, sum, keys};
         }",
    );
    assert_eq!(
        r,
        json!({"nonzero": 0, "length": 300_000, "letters": true,
               "sum": 3u64 * 299_999 * 300_000 / 2, "keys": kept_keys()})
    );
}

#[test]
fn python_memory_given_out_again_grown_and_freed_keeps_its_bytes() {
    let r = ok(
        "python3",
        "def main():
    # Blocks of one size freed and taken again, each checked before it is overwritten.
    nonzero = 0
    for i in range(300):
        block = bytearray(3000)
        nonzero += sum(1 for v in block if v)
        block[:] = b'\\xff' * 3000
    # Grown well past the region (1 MiB), by copying.
    xs = []
    for i in range(300000):
        xs.append(i * 3)
    text = ''.join(chr(97 + i % 26) for i in range(300000))
    letters = all(ord(text[i]) == 97 + i % 26 for i in range(0, len(text), 997))
    table = {}
    for i in range(50000):
        table['k%d' % i] = i
    # Objects of many sizes made and dropped, some kept.
    kept = []
    for i in range(20000):
        o = {('k%d' % k): k for k in range(i % 40)}
        if i % 7 == 0:
            kept.append(o)
    return {'nonzero': nonzero, 'length': len(text), 'letters': letters, 'sum': sum(xs),
            'table': sum(table.values()), 'keys': sum(len(o) for o in kept)}",
    );
    assert_eq!(
        r,
        json!({"nonzero": 0, "length": 300_000, "letters": true,
               "sum": 3u64 * 299_999 * 300_000 / 2, "table": 49_999u64 * 50_000 / 2,
               "keys": kept_keys()})
    );
}

#[test]
fn numpy_array_data_given_out_again_grown_and_zeroed_keeps_its_bytes() {
    // A fresh machine's first server installs the data packages first.
    common::shared().wait_for_python_data(std::time::Duration::from_secs(600));
    let r = ok(
        "python3",
        "import numpy as np
def main():
    # Array data of each size filled, freed, and taken again by np.zeros (calloc): zeros.
    nonzero = 0
    for _ in range(50):
        for n in (3, 100, 1000, 5000):
            np.full(n, 7, dtype=np.int64)
            nonzero += int(np.count_nonzero(np.zeros(n, dtype=np.int64)))
    # Grown in place or by copying (realloc), past the region (1 MiB).
    a = np.arange(1000, dtype=np.int64)
    a.resize(300000, refcheck=False)
    kept = int(a[:1000].sum()) == 999 * 1000 // 2 and int(np.count_nonzero(a[1000:])) == 0
    grown = int(np.fromiter((i for i in range(200000)), dtype=np.int64).sum())
    # Larger than the region: glibc's.
    big = np.ones(400000)
    big[::2] = 3.0
    return {'handler': np._core.multiarray.get_handler_name(), 'nonzero': nonzero,
            'kept': kept, 'grown': grown, 'big': float(big.sum())}",
    );
    assert_eq!(
        r,
        json!({"handler": "sandlot_fresh_memory", "nonzero": 0, "kept": true,
               "grown": 199_999u64 * 200_000 / 2, "big": 800_000.0})
    );
}
