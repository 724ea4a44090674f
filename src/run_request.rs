//! The body of `POST /v1/run` (also what `sandlot run` builds), and its validation into a job
//! for a zygote. Every refusal names the field it is about.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::api::Api;
use crate::config::{LimitPolicy, MIN_MEMORY_MB};
use crate::input_files::{self, InputFile};
use crate::protocol::{ImportPolicy, Job, ZygoteKind};
use crate::run::{Language, Limits, Mode};
use crate::supervisor::{javascript_intl, javascript_modules};
use crate::whitelist;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// python (python3, py), javascript (js, nodejs, node) or shell (sh, bash).
    #[schema(value_type = String)]
    pub language: Language,
    pub code: String,
    /// The arguments of `main`: an object whose keys are its parameter names.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub inputs: Option<Box<RawValue>>,
    #[serde(default)]
    pub mode: Option<Mode>,
    #[serde(default)]
    pub limits: RequestedLimits,
    #[serde(default)]
    pub allowed_modules: Option<Vec<String>>,
    #[serde(default)]
    pub network: Option<bool>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// Files the code finds beside it, read-only (`open("data.csv")`, `fs.readFileSync`, the
    /// shell's working directory).
    #[serde(default)]
    pub files: Option<Vec<InputFile>>,
    /// The API it came in by, which decides the import policy and the calling convention;
    /// never from the body.
    #[serde(skip)]
    pub api: Api,
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestedLimits {
    pub timeout_ms: Option<u64>,
    pub memory_mb: Option<u64>,
    pub max_output_bytes: Option<u64>,
}

/// A request that has passed validation: which zygote runs it, and the job it gets.
#[derive(Debug)]
pub struct Plan {
    pub api: Api,
    pub language: Language,
    pub kind: ZygoteKind,
    pub job: Job,
}

/// A refused request; the message starts with the field at fault.
#[derive(Debug)]
pub struct Invalid(pub String);

impl RunRequest {
    /// A request for `code` in `language`, every other field as if the client left it out.
    pub fn new(api: Api, language: Language, code: String) -> Self {
        Self {
            language,
            code,
            inputs: None,
            mode: None,
            limits: RequestedLimits::default(),
            allowed_modules: None,
            network: None,
            working_dir: None,
            env: None,
            files: None,
            api,
        }
    }

    /// Validates the request into a plan. `operator` is the modules of the operator's packages
    /// (`--python-requirements`) that this server has installed.
    pub fn plan(self, policy: &LimitPolicy, operator: &[String]) -> Result<Plan, Invalid> {
        let language = self.language;
        let kind = match language {
            Language::Python if whitelist::imports_python_data(&self.code, operator) => {
                ZygoteKind::PythonData
            }
            Language::Python => ZygoteKind::Python,
            Language::Javascript if javascript_intl::needs_intl(&self.code) => {
                ZygoteKind::JavascriptIntl
            }
            Language::Javascript if javascript_modules::needs_modules(&self.code) => {
                ZygoteKind::JavascriptModules
            }
            Language::Javascript => ZygoteKind::Javascript,
            Language::Shell => ZygoteKind::Shell,
        };
        let shell = kind == ZygoteKind::Shell;
        if self.working_dir.is_some() && !shell {
            return Err(Invalid("working_dir: applies to shell runs only".into()));
        }
        if self.env.is_some() && !shell {
            return Err(Invalid("env: applies to shell runs only".into()));
        }
        if shell && self.mode == Some(Mode::Main) {
            return Err(Invalid(
                "mode: a shell command runs as a script; `main` applies to python and javascript"
                    .into(),
            ));
        }
        if shell && self.inputs.is_some() {
            return Err(Invalid(
                "inputs: a shell command takes no inputs; pass values in `env`".into(),
            ));
        }
        let working_dir = match self.working_dir {
            Some(dir) => Some(shell_working_dir(&dir)?),
            None => None,
        };
        let env = self.env.unwrap_or_default();
        for (name, value) in &env {
            if name.is_empty() || name.contains(['=', '\0']) || value.contains('\0') {
                return Err(Invalid(format!(
                    "env: {name:?} is not a valid variable (no '=' or NUL in names, no NUL in values)"
                )));
            }
        }
        let inputs = match self.inputs {
            None => RawValue::from_string("{}".into()).expect("valid JSON"),
            Some(raw) if raw.get().trim_start().starts_with('{') => raw,
            Some(raw) => {
                return Err(Invalid(format!(
                    "inputs: must be a JSON object of named inputs, got {}",
                    describe_json(raw.get())
                )))
            }
        };
        let files = self.files.unwrap_or_default();
        input_files::check(&files, policy.max_input_files_bytes).map_err(Invalid)?;
        let limits = resolve_limits(&self.limits, policy)?;
        let imports = imports(language, self.api, self.allowed_modules, operator)?;
        Ok(Plan {
            api: self.api,
            language,
            kind,
            job: Job {
                code: self.code,
                inputs,
                mode: self
                    .mode
                    .unwrap_or(if shell { Mode::Script } else { Mode::Main }),
                limits,
                imports,
                convention: self.api.convention(),
                working_dir,
                env,
                network: self.network.unwrap_or(true),
                files,
                has_files: self.api.has_files(),
            },
        })
    }
}

fn resolve_limits(asked: &RequestedLimits, policy: &LimitPolicy) -> Result<Limits, Invalid> {
    let pick = |field: &str, asked: Option<u64>, default: u64, max: u64, min: u64| {
        let value = asked.unwrap_or(default);
        if value < min {
            return Err(Invalid(format!("limits.{field}: must be at least {min}")));
        }
        Ok(value.min(max))
    };
    let (d, m) = (policy.default, policy.max);
    Ok(Limits {
        timeout_ms: pick(
            "timeout_ms",
            asked.timeout_ms,
            d.timeout_ms,
            m.timeout_ms,
            1,
        )?,
        memory_mb: pick(
            "memory_mb",
            asked.memory_mb,
            d.memory_mb,
            m.memory_mb,
            MIN_MEMORY_MB,
        )?,
        max_output_bytes: pick(
            "max_output_bytes",
            asked.max_output_bytes,
            d.max_output_bytes,
            m.max_output_bytes,
            1,
        )?,
        max_output_files_bytes: m.max_output_files_bytes,
        max_output_file_bytes: m.max_output_file_bytes,
    })
}

/// The run's import policy: its route's, narrowed to exactly `asked` when given. Naming a
/// module the route does not allow is refused rather than silently dropped.
fn imports(
    language: Language,
    api: Api,
    asked: Option<Vec<String>>,
    operator: &[String],
) -> Result<ImportPolicy, Invalid> {
    let asked = asked.filter(|a| !a.is_empty());
    let route_policy = match language {
        Language::Python => whitelist::python_policy(api, operator),
        // Every module the zygotes bundle: `Any` says so without listing them in every job.
        Language::Javascript if asked.is_none() => return Ok(ImportPolicy::Any),
        Language::Javascript => ImportPolicy::Only {
            modules: whitelist::javascript(),
        },
        Language::Shell => ImportPolicy::Only {
            modules: Vec::new(),
        },
    };
    let Some(asked) = asked else {
        return Ok(route_policy);
    };
    for name in &asked {
        if !whitelist::permits(&route_policy, name) {
            return Err(Invalid(format!(
                "allowed_modules: {name:?} may not be imported here; {} may: {}",
                language.name(),
                whitelist::describe(&route_policy)
            )));
        }
    }
    Ok(ImportPolicy::Only { modules: asked })
}

/// Where a shell command may start: an absolute path without `..`, created inside the run's own
/// file system; the read-only system directories are not places to work in.
fn shell_working_dir(dir: &str) -> Result<String, Invalid> {
    let path = std::path::Path::new(dir);
    let refuse = |why: &str| Err(Invalid(format!("working_dir: {dir:?} {why}")));
    if !path.is_absolute() {
        return refuse("must be an absolute path, like /tmp/work");
    }
    if path
        .components()
        .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return refuse("must not contain '..'");
    }
    const SYSTEM: &[&str] = &[
        "/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/dev", "/proc",
    ];
    if SYSTEM.iter().any(|s| path.starts_with(s)) {
        return refuse("is a read-only system directory; use a directory under /tmp");
    }
    if dir.len() > 4096 || dir.contains('\0') {
        return refuse("is not a usable path");
    }
    Ok(dir.to_owned())
}

fn describe_json(text: &str) -> &'static str {
    match text.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> RunRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_peers_names_of_a_language_are_read_and_others_refused() {
        for (name, language) in [
            ("python3", Language::Python),
            ("nodejs", Language::Javascript),
            ("bash", Language::Shell),
        ] {
            let body = format!(r#"{{"language":"{name}","code":""}}"#);
            assert_eq!(request(&body).language, language);
        }
        let err = serde_json::from_str::<RunRequest>(r#"{"language":"ruby","code":""}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported language \"ruby\""), "{err}");
    }

    #[test]
    fn limits_are_capped_by_the_server_maxima() {
        let plan = request(r#"{"language":"py","code":"","limits":{"timeout_ms":999999999}}"#)
            .plan(&LimitPolicy::default(), &[])
            .unwrap();
        assert_eq!(
            plan.job.limits.timeout_ms,
            LimitPolicy::default().max.timeout_ms
        );
    }

    #[test]
    fn refusals_name_the_field() {
        let policy = LimitPolicy::default();
        let cases = [
            (r#"{"language":"js","code":"","inputs":[1]}"#, "inputs:"),
            (
                r#"{"language":"js","code":"","limits":{"memory_mb":1}}"#,
                "limits.memory_mb:",
            ),
            (
                r#"{"language":"python","code":"","allowed_modules":["subprocess"]}"#,
                "allowed_modules:",
            ),
            (r#"{"language":"python","code":"","env":{}}"#, "env:"),
        ];
        for (body, field) in cases {
            let err = request(body).plan(&policy, &[]).unwrap_err();
            assert!(err.0.starts_with(field), "{body}: {}", err.0);
        }
    }
}
