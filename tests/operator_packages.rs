//! The operator's own Python packages (`--python-requirements FILE`), installed from the real
//! package index beside the data packages: importable on every API (routed to the python-data
//! zygote), listed by Dify's and FastGPT's routes, reinstalled by Dify's update route, a
//! version conflict with the data packages' pins reported at install, an install from a
//! wheelhouse with no index, and an import the jail refuses reported as such.
//!
//! Each server has a data directory of its own (the operator's packages and the install lock
//! are per directory), holding a link to the data packages the default data directory has
//! (installed first if need be), so that only the operator's packages are installed here.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_sandlot");
const PYTHON: &str = env!("SANDLOT_PYTHON");
const REQUIREMENTS: &str = "pyyaml\nopenpyxl\nbeautifulsoup4\nxlsxwriter\n";

/// The default data directory, with the data packages installed.
fn installed_data_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = sandlot(&["config"], &[]);
        let effective: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|e| panic!("sandlot config: {e}"));
        let data = effective["data_dir"].as_str().unwrap().to_owned();
        let out = sandlot(
            &[
                "deps",
                "install",
                "--data-dir",
                &data,
                "--python-requirements",
                "",
            ],
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(data)
    })
}

fn sandlot(args: &[&str], envs: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SANDLOT_PYTHON_REQUIREMENTS")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

/// A fresh data directory (readable by the children's uid) sharing the installed data packages.
fn data_dir_sharing_the_data_packages() -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let installed = installed_data_dir();
    let dir = std::env::temp_dir().join(format!("sandlot-operator-{}", common::random_token()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in std::fs::read_dir(installed).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let data_site = name.starts_with("python3.") && !name.contains("-operator-");
        if data_site && entry.path().join(".complete").is_file() {
            std::os::unix::fs::symlink(entry.path(), dir.join(&name)).unwrap();
        }
    }
    dir
}

struct OperatorServer {
    server: common::Server,
    data_dir: PathBuf,
    requirements: PathBuf,
}

/// The server most tests share: pyyaml, openpyxl and beautifulsoup4 from the index.
fn shared() -> &'static OperatorServer {
    static SERVER: OnceLock<OperatorServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let data_dir = data_dir_sharing_the_data_packages();
        let requirements = data_dir.join("python-requirements-of-the-operator.txt");
        std::fs::write(&requirements, REQUIREMENTS).unwrap();
        let server = common::start(
            &[
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--python-requirements",
                requirements.to_str().unwrap(),
            ],
            &[],
        );
        wait_for_operator_packages(&server);
        OperatorServer {
            server,
            data_dir,
            requirements,
        }
    })
}

/// Waits until the python-data zygote serves the operator's packages; `/readyz`'s
/// `python_packages`.
fn wait_for_operator_packages(server: &common::Server) -> Value {
    let until = Instant::now() + Duration::from_secs(600);
    loop {
        let packages = server.get("/readyz").body["python_packages"].clone();
        let operator = &packages["operator_packages"];
        let state = operator["state"].as_str().unwrap_or("");
        assert!(!state.starts_with("unavailable"), "{packages}");
        if packages["zygote"]["ready"] == true && state == "installed" {
            return packages;
        }
        assert!(Instant::now() < until, "not installed in time: {packages}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn native(server: &common::Server, code: &str) -> Value {
    let r = server.run(json!({"language": "python", "code": code}));
    assert_eq!(r["ok"], true, "{code}\n{r}");
    r["result"].clone()
}

/// Runs `code` on Dify's route as a script; its stdout.
fn dify(server: &common::Server, code: &str) -> String {
    let body = json!({"language": "python3", "code": code, "preload": "", "enable_network": true});
    let r = server.post("/v1/sandbox/run", &body.to_string(), &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["error"], "", "{code}\n{}", r.text);
    r.body["data"]["stdout"].as_str().unwrap().to_owned()
}

const YAML: &str = "import yaml\n\
    def main():\n    return {'doc': yaml.safe_load('name: sandlot\\nports: [8194, 3000]\\n'),\n\
    \x20           'dump': yaml.safe_dump({'a': [1, 2]})}";
const SOUP: &str = "from bs4 import BeautifulSoup\n\
    def main():\n    soup = BeautifulSoup('<ul><li class=\"x\">one</li><li>two &amp; three</li></ul>', 'html.parser')\n\
    \x20   return {'items': [li.get_text() for li in soup.find_all('li')], 'x': soup.select_one('.x').string}";
const EXCEL: &str = "import io\nimport pandas as pd\n\
    def main():\n    buffer = io.BytesIO()\n\
    \x20   pd.DataFrame({'city': ['Lyon', 'Kyoto'], 'n': [3, 5]}).to_excel(buffer, index=False, sheet_name='data')\n\
    \x20   buffer.seek(0)\n\
    \x20   import openpyxl\n\
    \x20   sheets = openpyxl.load_workbook(buffer).sheetnames\n\
    \x20   buffer.seek(0)\n\
    \x20   return {'rows': pd.read_excel(buffer).to_dict(orient='records'), 'sheets': sheets}";

#[test]
fn the_operators_packages_import_on_the_native_api() {
    let server = &shared().server;
    let r = native(server, YAML);
    assert_eq!(r["doc"], json!({"name": "sandlot", "ports": [8194, 3000]}));
    assert_eq!(r["dump"], "a:\n- 1\n- 2\n");
    let r = native(server, SOUP);
    assert_eq!(r, json!({"items": ["one", "two & three"], "x": "one"}));
    let r = native(server, EXCEL);
    assert_eq!(
        r,
        json!({"rows": [{"city": "Lyon", "n": 3}, {"city": "Kyoto", "n": 5}], "sheets": ["data"]})
    );
    // Added to the native API's allowed set: `allowed_modules` may name them.
    let r = server.run(json!({"language": "python", "allowed_modules": ["yaml"],
                              "code": "import yaml\ndef main():\n    return {'ok': yaml.__name__}"}));
    assert_eq!(r["result"]["ok"], "yaml", "{r}");
}

#[test]
fn the_operators_packages_import_on_difys_route() {
    let server = &shared().server;
    let print = |code: &str| format!("{code}\nimport json\nprint(json.dumps(main()))");
    let out: Value = serde_json::from_str(&dify(server, &print(YAML))).unwrap();
    assert_eq!(out["doc"]["name"], "sandlot");
    let out: Value = serde_json::from_str(&dify(server, &print(SOUP))).unwrap();
    assert_eq!(out["items"], json!(["one", "two & three"]));
    let out: Value = serde_json::from_str(&dify(server, &print(EXCEL))).unwrap();
    assert_eq!(out["rows"][1], json!({"city": "Kyoto", "n": 5}));
}

#[test]
fn the_operators_packages_are_listed_by_dify_and_fastgpt() {
    let server = &shared().server;
    let r = server.get("/v1/sandbox/dependencies?language=python3");
    assert_eq!(r.body["code"], 0, "{}", r.text);
    let names: Vec<String> = r.body["data"]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap().to_lowercase())
        .collect();
    for name in ["pyyaml", "openpyxl", "beautifulsoup4", "numpy"] {
        assert!(names.contains(&name.to_owned()), "{name}: {}", r.text);
    }
    let r = server.get("/sandbox/modules");
    let python = r.body["data"]["python"].as_array().unwrap();
    // openpyxl is one of the data packages too; xlsxwriter is the operator's alone.
    for module in ["yaml", "bs4", "xlsxwriter", "math", "numpy"] {
        assert!(python.contains(&json!(module)), "{module}: {}", r.text);
    }
    // And FastGPT's route lets its code import them.
    let body = json!({"code": "import yaml\ndef main(variables):\n    return {'v': yaml.safe_load('x: 1')['x']}",
                      "variables": {}});
    let r = server.post("/sandbox/python", &body.to_string(), &[]);
    assert_eq!(r.body["success"], true, "{}", r.text);
    assert_eq!(r.body["data"]["codeReturn"]["v"], 1, "{}", r.text);
}

/// `deps install` with the same file finds it installed; with a conflicting pin it fails with
/// pip's reason and exit status 1; `deps list` lists the operator's packages.
#[test]
fn deps_install_and_list_cover_the_operators_packages() {
    let shared = shared();
    let data = shared.data_dir.to_str().unwrap();
    // The shared server's file as it started (another test changes that file).
    let same = shared.data_dir.join("same-requirements.txt");
    std::fs::write(&same, REQUIREMENTS).unwrap();
    let requirements = same.to_str().unwrap();
    let out = sandlot(
        &[
            "deps",
            "install",
            "--data-dir",
            data,
            "--python-requirements",
            requirements,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sandlot(
        &["deps", "list", "--data-dir", data],
        &[("SANDLOT_PYTHON_REQUIREMENTS", requirements)],
    );
    let listed = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(
        listed.contains("pyyaml==") && listed.contains("numpy=="),
        "{listed}"
    );

    let conflicting = shared.data_dir.join("conflicting.txt");
    std::fs::write(&conflicting, "pyyaml\nnumpy==1.26.4\n").unwrap();
    let out = sandlot(
        &[
            "deps",
            "install",
            "--data-dir",
            data,
            "--python-requirements",
            conflicting.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("numpy==1.26.4") && stderr.contains("(constraint) numpy=="),
        "{stderr}"
    );
}

/// A conflicting pin is refused at install with pip's reason, and the server keeps serving the
/// data packages and the operator's packages it had; a new package in the file is installed by
/// the update route and imports at once.
#[test]
fn dependencies_update_installs_a_new_package_and_reports_a_conflict() {
    let shared = shared();
    let server = &shared.server;
    let update = || {
        let r = server.post("/v1/sandbox/dependencies/update", "", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
        r.body
    };
    std::fs::write(
        &shared.requirements,
        format!("{REQUIREMENTS}numpy==1.26.4\n"),
    )
    .unwrap();
    let r = update();
    assert_eq!(r["code"], -500, "{r}");
    let message = r["message"].as_str().unwrap();
    assert!(
        message.contains("numpy==1.26.4") && message.contains("(constraint) numpy==2.2.6"),
        "{message}"
    );
    let packages = server.get("/readyz").body["python_packages"].clone();
    assert_eq!(packages["state"], "installed", "{packages}");
    let state = packages["operator_packages"]["state"].as_str().unwrap();
    assert!(
        state.starts_with("unavailable") && state.contains("numpy==1.26.4"),
        "{packages}"
    );
    let r = native(
        server,
        "import numpy as np\nimport yaml\ndef main():\n    return {'v': np.__version__, 'y': yaml.safe_load('a: 1')}",
    );
    assert_eq!(r, json!({"v": "2.2.6", "y": {"a": 1}}));

    std::fs::write(&shared.requirements, format!("{REQUIREMENTS}xmltodict\n")).unwrap();
    let r = update();
    assert_eq!(r["code"], 0, "{r}");
    let listed = r["data"]["dependencies"].to_string().to_lowercase();
    assert!(
        listed.contains("xmltodict") && listed.contains("pyyaml"),
        "{listed}"
    );
    let r = native(
        server,
        "import xmltodict\ndef main():\n    return xmltodict.parse('<a><b>1</b><b>2</b></a>')",
    );
    assert_eq!(r, json!({"a": {"b": ["1", "2"]}}));
    let packages = wait_for_operator_packages(server);
    let modules = &packages["operator_packages"]["serving"]["modules"];
    assert!(
        modules.as_array().unwrap().contains(&json!("xmltodict")),
        "{packages}"
    );
    // The zygote it replaced is retired once no run holds it, not left up with its pool.
    common::wait_for(
        Duration::from_secs(30),
        || {
            format!(
                "one python-data zygote, not {}",
                python_data_zygotes(server)
            )
        },
        || (python_data_zygotes(server) == 1).then_some(()),
    );
}

/// The server's python-data zygotes: its children started as `__zygote python-data`.
fn python_data_zygotes(server: &common::Server) -> usize {
    let parent_of = |stat: &str| {
        let after_name = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        after_name.split_whitespace().nth(1)?.parse::<u32>().ok()
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            let path = entry.path();
            let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
            let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
            parent_of(&stat) == Some(server.pid)
                && cmdline.split(|&b| b == 0).any(|arg| arg == b"python-data")
        })
        .count()
}

/// With no index (`--pip-index-url` at a closed port), the packages come from a wheelhouse
/// (`--pip-find-links`) made with `pip download`. An import that needs a file the jail does
/// not let a run read is `module_not_allowed`, naming the file.
#[test]
fn a_wheelhouse_installs_offline_and_a_refused_import_says_what_was_refused() {
    let data_dir = data_dir_sharing_the_data_packages();
    let wheelhouse = data_dir.join("wheelhouse");
    std::fs::create_dir_all(&wheelhouse).unwrap();
    let out = Command::new(PYTHON)
        .args([
            "-m",
            "pip",
            "download",
            "--quiet",
            "--only-binary=:all:",
            "-d",
        ])
        .arg(&wheelhouse)
        .arg("pyyaml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pip download: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    make_probe_wheel(&wheelhouse);
    let requirements = data_dir.join("requirements.txt");
    std::fs::write(&requirements, "pyyaml\nsandlot-probe\n").unwrap();
    let server = common::start(
        &[
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--python-requirements",
            requirements.to_str().unwrap(),
            "--pip-index-url",
            "http://127.0.0.1:9/simple",
            "--pip-find-links",
            wheelhouse.to_str().unwrap(),
        ],
        &[("PIP_RETRIES", "0")],
    );
    let packages = wait_for_operator_packages(&server);
    let modules = &packages["operator_packages"]["serving"]["modules"];
    assert_eq!(
        modules,
        &json!(["_yaml", "sandlot_probe", "yaml"]),
        "{packages}"
    );
    let r = native(&server, "import yaml, sandlot_probe\ndef main():\n    return {'v': sandlot_probe.VALUE, 'y': yaml.safe_load('[1]')}");
    assert_eq!(r, json!({"v": 42, "y": [1]}));

    let code = "import sandlot_probe.reads_host\ndef main():\n    return {}";
    let r = server.run(json!({"language": "python", "code": code}));
    assert_eq!(r["error"]["kind"], "module_not_allowed", "{r}");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("sandlot_probe.reads_host")
            && message.contains("refuses: opening /etc/hostname"),
        "{message}"
    );
    let body = json!({"language": "python3", "code": "import sandlot_probe.reads_host\n"});
    let r = server.post("/v1/sandbox/run", &body.to_string(), &[]);
    let error = r.body["data"]["error"].as_str().unwrap();
    assert!(
        error.contains("refuses: opening /etc/hostname"),
        "{}",
        r.text
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

/// A wheel, made here, whose package imports at once but has a module that reads a host file
/// when imported.
fn make_probe_wheel(dir: &Path) {
    const MAKE: &str = r#"
import base64, hashlib, sys, zipfile
files = {
    "sandlot_probe/__init__.py": "VALUE = 42\n",
    "sandlot_probe/reads_host.py": "with open('/etc/hostname') as f:\n    NAME = f.read()\n",
    "sandlot_probe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: sandlot-probe\nVersion: 1.0\n",
    "sandlot_probe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: sandlot-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join(f"{n},{digest(t.encode())},{len(t.encode())}\n" for n, t in files.items())
with zipfile.ZipFile(sys.argv[1] + "/sandlot_probe-1.0-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        wheel.writestr(name, text)
    wheel.writestr("sandlot_probe-1.0.dist-info/RECORD", record + "sandlot_probe-1.0.dist-info/RECORD,,\n")
"#;
    let out = Command::new(PYTHON)
        .args(["-c", MAKE])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The settings' names: flag, SANDLOT_* variable, Dify's PIP_MIRROR_URL, the file's keys.
#[test]
fn the_package_settings_have_their_variables_and_keys() {
    let out = sandlot(
        &["config"],
        &[
            ("SANDLOT_PYTHON_REQUIREMENTS", "/srv/requirements.txt"),
            ("PIP_MIRROR_URL", "https://mirror.example/simple"),
            ("SANDLOT_PIP_FIND_LINKS", "/srv/wheels"),
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let effective: toml::Table = toml::from_str(&text).unwrap();
    assert_eq!(
        effective["python_requirements"].as_str(),
        Some("/srv/requirements.txt"),
        "{text}"
    );
    assert_eq!(
        effective["pip_index_url"].as_str(),
        Some("https://mirror.example/simple")
    );
    assert_eq!(effective["pip_find_links"].as_str(), Some("/srv/wheels"));
    let out = sandlot(
        &[
            "config",
            "--python-requirements",
            "",
            "--pip-index-url",
            "https://pypi.example/simple",
        ],
        &[("PIP_MIRROR_URL", "https://mirror.example/simple")],
    );
    let effective: toml::Table = toml::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert!(!effective.contains_key("python_requirements"));
    assert_eq!(
        effective["pip_index_url"].as_str(),
        Some("https://pypi.example/simple")
    );
}
