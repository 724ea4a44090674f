//! Every Python and JavaScript example in ../shared/reference that needs neither the network
//! nor a third-party module, run as its documentation shows it.

mod common;

use serde_json::json;

// FastGPT code-run node (fastgpt-code-run-node.txt).

#[test]
fn fastgpt_js_data_format_conversion() {
    let code = "// Convert comma-separated string to array\nfunction main({input}){\nconst items = input.split(',').map(s => s.trim()).filter(Boolean)\nreturn { items, count: items.length }\n}";
    let r = common::shared().javascript(code, json!({"input": "a, b,,c "}));
    assert_eq!(
        r["result"],
        json!({"items": ["a", "b", "c"], "count": 3}),
        "{r}"
    );
}

#[test]
fn fastgpt_js_destructured_variables() {
    let code = "async function main({data1, data2}){\nreturn {\nresult: data1 + data2\n}\n}";
    let r = common::shared().javascript(code, json!({"data1": 2, "data2": 40}));
    assert_eq!(r["result"], json!({"result": 42}), "{r}");
}

#[test]
fn fastgpt_python_variables_by_name() {
    let code = "def main(data1, data2):\n    return {\"result\": data1 + data2}";
    let r = common::shared().python(code, json!({"data1": "ab", "data2": "cd"}));
    assert_eq!(r["result"], json!({"result": "abcd"}), "{r}");
}

#[test]
fn fastgpt_python_data_statistics() {
    let code = "import math\ndef main(numbers):\n    if not numbers:\n        return {\"error\": \"no data\"}\n    mean = sum(numbers) / len(numbers)\n    variance = sum((x - mean)**2 for x in numbers) / len(numbers)\n    return {\n        \"mean\": mean,\n        \"max\": max(numbers),\n        \"min\": min(numbers),\n        \"std\": math.sqrt(variance)\n    }";
    let numbers = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
    let mean = numbers.iter().sum::<f64>() / numbers.len() as f64;
    let std =
        (numbers.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / numbers.len() as f64).sqrt();
    let r = common::shared().python(code, json!({"numbers": numbers}));
    assert_eq!(r["result"]["mean"], mean, "{r}");
    assert_eq!(r["result"]["max"], 9.0);
    assert_eq!(r["result"]["min"], 2.0);
    assert_eq!(r["result"]["std"], std);
    let empty = common::shared().python(code, json!({"numbers": []}));
    assert_eq!(empty["result"], json!({"error": "no data"}));
}

#[test]
fn fastgpt_python_date_processing() {
    let code = "from datetime import datetime, timedelta\ndef main(date_str):\n    dt = datetime.strptime(date_str, \"%Y-%m-%d\")\n    next_week = dt + timedelta(days=7)\n    return {\n        \"input\": date_str,\n        \"next_week\": next_week.strftime(\"%Y-%m-%d\"),\n        \"weekday\": dt.strftime(\"%A\")\n    }";
    let r = common::shared().python(code, json!({"date_str": "2024-02-26"}));
    assert_eq!(
        r["result"],
        json!({"input": "2024-02-26", "next_week": "2024-03-04", "weekday": "Monday"}),
        "{r}"
    );
}

#[test]
fn fastgpt_python_json_processing() {
    let code = "import json\ndef main(json_str):\n    data = json.loads(json_str)\n    # Extract specific fields\n    result = {\n        \"names\": [item[\"name\"] for item in data if \"name\" in item],\n        \"count\": len(data)\n    }\n    return result";
    let input = json!([{"name": "a"}, {"id": 2}, {"name": "c"}]).to_string();
    let r = common::shared().python(code, json!({"json_str": input}));
    assert_eq!(r["result"], json!({"names": ["a", "c"], "count": 3}), "{r}");
}

#[test]
fn fastgpt_python_regular_expression_matching() {
    let code = "import re\ndef main(text):\n    # Extract all email addresses\n    emails = re.findall(r'\\b[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\\.[A-Z|a-z]{2,}\\b', text)\n    return {\n        \"emails\": emails,\n        \"count\": len(emails)\n    }";
    let r = common::shared().python(
        code,
        json!({"text": "write to a.b@example.com or ops@test.org, not @nope"}),
    );
    assert_eq!(
        r["result"],
        json!({"emails": ["a.b@example.com", "ops@test.org"], "count": 2}),
        "{r}"
    );
}

// Dify code node (dify-code-node.md).

#[test]
fn dify_structured_data_processing() {
    let code = "def main(http_response: str) -> str:\n    import json\n    data = json.loads(http_response)\n    return {\n        # Note to declare 'result' in the output variables\n        'result': data['data']['name'] \n    }";
    let response = json!({"data": {"name": "dify"}}).to_string();
    let r = common::shared().python(code, json!({"http_response": response}));
    assert_eq!(r["result"], json!({"result": "dify"}), "{r}");
}

#[test]
fn dify_mathematical_calculation() {
    let code = "def main(x: list) -> float:\n    return {\n        # Note to declare 'result' in the output variables\n        'result': sum([(i - sum(x) / len(x)) ** 2 for i in x]) / len(x)\n    }";
    let x = [1.0, 2.0, 3.0, 4.0];
    let mean = x.iter().sum::<f64>() / 4.0;
    let variance = x.iter().map(|i| (i - mean).powi(2)).sum::<f64>() / 4.0;
    let r = common::shared().python(code, json!({"x": x}));
    assert_eq!(r["result"]["result"], variance, "{r}");
}

#[test]
fn dify_data_concatenation() {
    let code = "def main(knowledge1: list, knowledge2: list) -> list:\n    return {\n        # Note to declare 'result' in the output variables\n        'result': knowledge1 + knowledge2\n    }";
    let r = common::shared().python(
        code,
        json!({"knowledge1": [1, "a"], "knowledge2": [{"b": 2}]}),
    );
    assert_eq!(r["result"], json!({"result": [1, "a", {"b": 2}]}), "{r}");
}

#[test]
fn dify_faq_file_read_is_refused() {
    let code = "def main() -> dict:\n    return {\n        \"result\": open(\"/etc/passwd\").read(),\n    }";
    let r = common::shared().python(code, json!({}));
    assert_eq!(r["error"]["kind"], "runtime_error", "{r}");
    assert!(!r.to_string().contains("root:"));
}

// The sandbox module API examples (sandbox-module-*.txt), run as scripts.

#[test]
fn sandbox_module_js_examples() {
    let s = common::shared();
    let hello = s.run(json!({"language": "javascript", "mode": "script",
        "code": "console.log(\"Hello, World!\");"}));
    assert_eq!(hello["stdout"], "Hello, World!\n", "{hello}");
    let data = s.run(json!({"language": "javascript", "mode": "script",
        "code": "const data = { name: \"test\", value: 42 };\nconsole.log(JSON.stringify(data, null, 2));"}));
    assert_eq!(
        data["stdout"], "{\n  \"name\": \"test\",\n  \"value\": 42\n}\n",
        "{data}"
    );
}

#[test]
fn sandbox_module_python_examples() {
    let s = common::shared();
    let hello = s.run(json!({"language": "python", "mode": "script",
        "code": "print(\"Hello, World!\")", "limits": {"timeout_ms": 10000}}));
    assert_eq!(hello["stdout"], "Hello, World!\n", "{hello}");
    let pi = s.run(json!({"language": "python", "mode": "script",
        "code": "import math\nprint(math.pi)", "allowed_modules": ["math"]}));
    assert_eq!(pi["stdout"], format!("{}\n", std::f64::consts::PI), "{pi}");
}
