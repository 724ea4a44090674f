//! numpy, pandas, matplotlib and jinja2, installed by sandlot itself and pre-imported by the
//! python-data zygote: values come back as JSON, figures as PNG, templates render, the jail and
//! the memory limit still hold. The first server on a machine installs the packages (pip), so
//! these tests wait for `/readyz` to report the python-data zygote ready.

mod common;

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{json, Value};

fn server() -> &'static common::Server {
    static SERVER: OnceLock<common::Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = common::start(&[], &[]);
        server.wait_for_python_data(Duration::from_secs(600));
        server
    })
}

fn py(code: &str, inputs: Value) -> Value {
    let r = server().python(code, inputs);
    assert_eq!(r["ok"], true, "{code}\n{r}");
    r
}

/// The PNG signature and IHDR of a base64 image: (width, height).
fn png_size(b64: &str) -> (u32, u32) {
    let bytes = decode_base64(b64);
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let clean: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::new();
    for chunk in clean.chunks(4) {
        let n = chunk
            .iter()
            .fold(0u32, |acc, c| (acc << 6) | value(*c) as u32)
            << (6 * (4 - chunk.len()));
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn pandas_group_by_and_dataframe_returns() {
    let r = py(
        "import pandas as pd\ndef main(rows):\n    df = pd.DataFrame(rows)\n\
         \x20   totals = df.groupby('team', as_index=False)['score'].sum().sort_values('team')\n\
         \x20   return {'totals': totals, 'mean': df['score'].mean(), 'series': df['score'],\n\
         \x20           'n': len(df), 'when': pd.Timestamp('2024-05-06 07:08:09')}",
        json!({"rows": [{"team": "b", "score": 3}, {"team": "a", "score": 1}, {"team": "b", "score": 5}]}),
    );
    assert_eq!(
        r["result"]["totals"],
        json!([{"team": "a", "score": 1}, {"team": "b", "score": 8}])
    );
    assert_eq!(r["result"]["mean"], 3.0);
    assert_eq!(r["result"]["series"], json!([3, 1, 5]));
    assert_eq!(r["result"]["n"], 3);
    assert_eq!(r["result"]["when"], "2024-05-06T07:08:09");
}

#[test]
fn numpy_values_nan_and_dates_become_json() {
    let r = py(
        "import numpy as np\nimport datetime, decimal\ndef main():\n\
         \x20   a = np.array([[1, 2], [3, 4]])\n\
         \x20   return {'matrix': a, 'sum': a.sum(), 'mean': np.float32(2.5), 'flag': np.bool_(True),\n\
         \x20           'nan': float('nan'), 'np_nan': np.nan, 'inf': np.array([np.inf, -np.inf, 1.5]),\n\
         \x20           'deep': {'x': [np.int64(7), {'y': np.float64('nan')}]},\n\
         \x20           'date': datetime.date(2024, 2, 29), 'dec': decimal.Decimal('1.10'),\n\
         \x20           'det': float(np.linalg.det(np.eye(3)))}",
        json!({}),
    );
    let result = &r["result"];
    assert_eq!(result["matrix"], json!([[1, 2], [3, 4]]));
    assert_eq!(result["sum"], 10);
    assert_eq!(result["mean"], 2.5);
    assert_eq!(result["flag"], true);
    assert_eq!(result["nan"], Value::Null);
    assert_eq!(result["np_nan"], Value::Null);
    assert_eq!(result["inf"], json!([null, null, 1.5]));
    assert_eq!(result["deep"], json!({"x": [7, {"y": null}]}));
    assert_eq!(result["date"], "2024-02-29");
    assert_eq!(result["dec"], "1.10");
    assert_eq!(result["det"], 1.0);
}

#[test]
fn a_value_that_cannot_be_converted_names_its_path() {
    let r = server().python(
        "import numpy as np\ndef main():\n    return {'ok': 1, 'bad': [1, {'f': np.array}]}",
        json!({}),
    );
    assert_eq!(r["error"]["kind"], "invalid_return", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("result.bad[1].f"),
        "{r}"
    );
}

#[test]
fn open_figures_come_back_as_png() {
    let r = py(
        "import matplotlib.pyplot as plt\ndef main(xs):\n    fig, ax = plt.subplots(figsize=(4, 3), dpi=50)\n\
         \x20   ax.plot(xs, [x * x for x in xs])\n    ax.set_title('carré ✓')\n\
         \x20   plt.figure(figsize=(2, 2), dpi=50)\n    plt.bar(['a', 'b'], [1, 2])\n    return {'n': len(xs)}",
        json!({"xs": [1, 2, 3]}),
    );
    let images = r["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{r}");
    assert_eq!(images[0]["format"], "png");
    assert_eq!(png_size(images[0]["base64"].as_str().unwrap()), (200, 150));
    assert_eq!(png_size(images[1]["base64"].as_str().unwrap()), (100, 100));

    // Script mode too, and a closed figure is not returned.
    let r = server().run(json!({"language": "python", "mode": "script",
        "code": "import matplotlib.pyplot as plt\nplt.plot([1, 2])\nplt.figure()\nplt.close()\nprint('drawn')"}));
    assert_eq!(r["stdout"], "drawn\n");
    assert_eq!(r["images"].as_array().unwrap().len(), 1, "{r}");
    // The next run starts with no figure.
    let r = py(
        "import matplotlib.pyplot as plt\ndef main():\n    return {'open': len(plt.get_fignums())}",
        json!({}),
    );
    assert_eq!(r["result"]["open"], 0);
    assert_eq!(r["images"], json!([]));
}

#[test]
fn jinja2_renders_loops_and_unicode() {
    let r = py(
        "from jinja2 import Template\ndef main(items, name):\n\
         \x20   t = Template('Hello {{ name }}!{% for i in items %} [{{ loop.index }}:{{ i|upper }}]{% endfor %}{{ missing }}\\n')\n\
         \x20   return {'text': t.render(items=items, name=name)}",
        json!({"items": ["ä", "ß"], "name": "世界"}),
    );
    // Jinja2's defaults: undefined renders empty, the final newline is dropped.
    assert_eq!(r["result"]["text"], "Hello 世界! [1:Ä] [2:SS]");
}

#[test]
fn difys_jinja2_template_through_the_dify_route() {
    // What Dify sends for a template node: a python3 script that imports jinja2 and prints the
    // render between the markers.
    let template = "{{ arg1 }} + {{ arg2 }}{% if arg2 > 1 %} (many){% endif %}";
    let inputs = json!({"arg1": "<b>x</b>", "arg2": 2}).to_string();
    let code = format!(
        "import jinja2\nimport json\ntemplate = jinja2.Template({template:?})\n\
         inputs = json.loads({inputs:?})\noutput = template.render(**inputs)\n\
         print('<<RESULT>>' + output + '<<RESULT>>')\n"
    );
    let reply = server().post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": code, "preload": "import jinja2", "enable_network": true}).to_string(),
        &[],
    );
    assert_eq!(reply.body["data"]["error"], "", "{}", reply.text);
    // No autoescape by default.
    assert_eq!(
        reply.body["data"]["stdout"],
        "<<RESULT>><b>x</b> + 2 (many)<<RESULT>>\n"
    );
}

#[test]
fn the_memory_limit_holds_with_numpy() {
    let r = server().run(json!({"language": "python", "limits": {"memory_mb": 128},
        "code": "import numpy as np\ndef main():\n    return {'n': int(np.zeros(10**10).sum())}"}));
    assert_eq!(r["error"]["kind"], "memory_limit", "{r}");
    let r = server().run(json!({"language": "python", "limits": {"memory_mb": 128},
        "code": "import numpy as np\ndef main():\n    blocks = []\n    while True:\n        blocks.append(np.ones(10**6))"}));
    assert_eq!(r["error"]["kind"], "memory_limit", "{r}");
}

#[test]
fn the_jail_still_holds_for_data_code() {
    let token = common::random_token();
    let name = common::random_token();
    let canary = std::env::temp_dir().join(format!("sandlot-data-canary-{name}"));
    std::fs::write(&canary, &token).unwrap();
    let r = server().python(
        "import numpy as np\nimport pandas as pd\nimport matplotlib.pyplot as plt\ndef main(path):\n\
         \x20   out = {}\n    for label, attempt in [\n\
         \x20       ('np.loadtxt', lambda: str(np.loadtxt(path, dtype=str))),\n\
         \x20       ('pd.read_csv', lambda: pd.read_csv(path).to_json()),\n\
         \x20       ('np.save', lambda: np.save(path + '.npy', np.ones(2))),\n\
         \x20       ('savefig', lambda: plt.figure().savefig(path + '.png')),\n\
         \x20       ('passwd', lambda: pd.read_csv('/etc/passwd', sep=':', header=None).to_json()),\n\
         \x20   ]:\n        try:\n            out[label] = attempt()\n        except BaseException as e:\n\
         \x20           out[label] = type(e).__name__\n    plt.close('all')\n    return out",
        json!({"path": canary}),
    );
    assert!(!r.to_string().contains(&token), "the canary was read: {r}");
    assert!(
        !r.to_string().contains("root:x:0:0"),
        "/etc/passwd was read: {r}"
    );
    assert!(!std::path::Path::new(&format!("{}.npy", canary.display())).exists());
    assert!(!std::path::Path::new(&format!("{}.png", canary.display())).exists());
    assert_eq!(std::fs::read_to_string(&canary).unwrap(), token);
    std::fs::remove_file(&canary).unwrap();
}

#[test]
fn numpy_random_differs_between_runs() {
    let code = "import numpy as np\ndef main():\n    return {'r': float(np.random.rand())}";
    let a = py(code, json!({}));
    let b = py(code, json!({}));
    assert_ne!(a["result"]["r"], b["result"]["r"]);
}

#[test]
fn plain_python_stays_on_the_plain_zygote_and_deps_are_listed() {
    // A run without data imports cannot import them by other means.
    let r = server().python(
        "def main():\n    return {'x': __import__('numpy').__name__}",
        json!({}),
    );
    assert_eq!(r["error"]["kind"], "module_not_allowed", "{r}");
    let reply = server().get("/v1/sandbox/dependencies?language=python3");
    let names: Vec<&str> = reply.body["data"]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    for package in ["numpy", "pandas", "matplotlib", "jinja2"] {
        assert!(
            names.iter().any(|n| n.eq_ignore_ascii_case(package)),
            "{package}: {}",
            reply.text
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sandlot"))
        .args(["deps", "list"])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("numpy==2.2.6") && listed.contains("pandas=="),
        "{listed}"
    );
}

#[test]
fn fastgpt_seed_examples_with_the_data_packages() {
    let reply = server().post(
        "/sandbox/python",
        &json!({"code": "import numpy as np\nimport pandas as pd\ndef main(data):\n    arr = np.array(data)\n    return {'mean': float(arr.mean()), 'df': pd.DataFrame({'v': data}).describe()['v']['max']}", "variables": {"data": [1, 2, 3, 6]}}).to_string(),
        &[],
    );
    assert_eq!(
        reply.body["data"]["codeReturn"],
        json!({"mean": 3.0, "df": 6.0}),
        "{}",
        reply.text
    );
}

/// Modules that load on the host but cannot in a run, each for a reason that no code node
/// meets: the names start with these.
const JAILED_ON_PURPOSE: &[(&str, &str)] = &[
    // Build tools that open /dev/null for writing as they load: runs have no file writes.
    ("numpy.distutils", "writes /dev/null"),
    ("numpy.f2py._backends._distutils", "writes /dev/null"),
    // The Tk GUI toolkit: tkinter is refused (there is no display to draw on).
    ("matplotlib.backends._backend_tk", "tkinter"),
    ("matplotlib.backends._tkagg", "tkinter"),
    ("matplotlib.backends.backend_tk", "tkinter"),
];

/// Every module of numpy, pandas, matplotlib, jinja2 and tabulate imports in a run exactly as
/// it does on the host with the same packages (lazy imports included: a run loads what the
/// zygote did not pre-import), but for the few listed above.
#[test]
fn every_submodule_of_the_data_packages_imports_as_on_the_host() {
    let program = include_str!("programs/import_every_submodule.py");
    let r = server().run(json!({
        "language": "python",
        "code": program,
        "limits": {"timeout_ms": 120_000, "memory_mb": 2048},
    }));
    assert_eq!(r["ok"], true, "{r}");
    let child = &r["result"];

    let python = option_env!("PYO3_PYTHON").unwrap_or("python3");
    let out = std::process::Command::new(python)
        .args(["-s", "-S", "-", "--on-the-host"])
        .env("PYTHONPATH", child["site"].as_str().unwrap())
        .env("MPLBACKEND", "Agg")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut host| {
            use std::io::Write;
            host.stdin.take().unwrap().write_all(program.as_bytes())?;
            host.wait_with_output()
        })
        .expect("the host's python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("@@"))
        .unwrap_or_else(|| panic!("no result from the host's python: {stdout}"));
    let host: Value = serde_json::from_str(line).unwrap();

    assert_eq!(child["python"], host["python"], "not the same Python");
    assert_eq!(child["modules"], host["modules"], "not the same packages");
    let count = child["modules"].as_array().unwrap().len();
    // A sanity floor: about 790 modules on CPython 3.11, 690 on 3.13 with the same pins.
    assert!(count > 500, "only {count} modules found");
    let unexpected: Vec<String> = child["failures"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(name, _)| host["failures"].get(name.as_str()).is_none())
        .filter(|(name, _)| {
            !JAILED_ON_PURPOSE
                .iter()
                .any(|(prefix, _)| name.starts_with(prefix))
        })
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} of {count} modules import on the host but not in a run:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
}
