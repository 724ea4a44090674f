//! The escape suite: every case tries to get out of the jail, and every case is judged by its
//! *effect*, never by its error text. After each case:
//! - the canary files (one world-readable, one world-writable) hold their random content, and
//!   their directory holds nothing new;
//! - no process was spawned: a spawned one would have created the marker file;
//! - the TCP, UDP and unix-socket listeners the test opened on the host got nothing;
//! - the response carries neither the canary's content, nor the API key, nor the server's
//!   canary environment variable;
//! - the server still answers a control run correctly.
//!
//! And all along, a second thread's control runs come back right.
//!
//! A few cases also say what they must return (`memory_limit`, `timeout`, a clean state), where
//! that outcome is the guarantee being tested.

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{json, Value};

#[derive(Clone, Copy)]
enum Lang {
    Py,
    Js,
}

#[derive(Clone, Copy)]
enum Expect {
    /// Only the effects are checked.
    Effects,
    /// The run must end with one of these error kinds.
    Kind(&'static [&'static str]),
    /// The result must be exactly this JSON (for state that must not leak).
    Result(&'static str),
}

/// Python cases are the body of `_case(k)`, wrapped so that whatever it returns or raises is
/// echoed back (a successful escape would echo the canary). `Raw` cases are whole programs
/// defining `main(**k)`.
#[derive(Clone, Copy)]
enum Code {
    Body(&'static str),
    Raw(&'static str),
}

struct Case {
    name: &'static str,
    lang: Lang,
    code: Code,
    expect: Expect,
    timeout_ms: u64,
}

const fn py(name: &'static str, body: &'static str) -> Case {
    Case {
        name,
        lang: Lang::Py,
        code: Code::Body(body),
        expect: Expect::Effects,
        timeout_ms: 5000,
    }
}

const fn py_raw(name: &'static str, code: &'static str, expect: Expect, timeout_ms: u64) -> Case {
    Case {
        name,
        lang: Lang::Py,
        code: Code::Raw(code),
        expect,
        timeout_ms,
    }
}

const fn js(name: &'static str, code: &'static str, expect: Expect, timeout_ms: u64) -> Case {
    Case {
        name,
        lang: Lang::Js,
        code: Code::Raw(code),
        expect,
        timeout_ms,
    }
}

const NONE: Expect = Expect::Effects;
const MEMORY: Expect = Expect::Kind(&["memory_limit"]);
const TIMEOUT: Expect = Expect::Kind(&["timeout"]);
const OUTPUT: Expect = Expect::Kind(&["output_limit"]);
const NOT_ALLOWED: Expect = Expect::Kind(&["module_not_allowed"]);
/// `fs` on sandlot's own API serves only the run's own files (docs/api.md, "Files"): a host
/// path is not found there. On the peers' APIs it is not allowed at all.
const FS_OF_THE_RUN: Expect = Expect::Kind(&["module_not_allowed", "runtime_error"]);

/// Reaches the real `os` through the object graph, as escapes from the import hook do, plus
/// the real `__import__` of the builtins module.
const PY_REACH: &str = "\
OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__
os = OS['sys'].modules['os']
IMPORT = OS['sys'].modules['builtins'].__import__
";

/// The same reach for FastGPT's API, which refuses any source naming `__subclasses__`: the
/// real `os` through a module that holds it.
const PY_REACH_FASTGPT: &str = "\
import random as _random
os = _random._os
OS = vars(os)
IMPORT = OS['sys'].modules['builtins'].__import__
";

/// Echoes whatever `_case` returns or raises (a successful escape would echo the canary).
const PY_MAIN: &str = "
def main(**k):
    try:
        value = _case(k)
    except BaseException as e:
        return {'raised': type(e).__name__}
    return {'value': repr(value)[:4000]}

";

const CASES: &[Case] = &[
    // ---- host files: read ----
    py("read the canary with os.open", "return os.read(os.open(k['canary'], os.O_RDONLY), 100)"),
    py("read the canary with io.open", "return OS['sys'].modules['io'].open(k['canary']).read()"),
    py("read the canary with codecs.open (uses the real builtins.open)", "import codecs\nreturn codecs.open(k['canary']).read()"),
    py("read /etc/passwd", "return os.read(os.open('/etc/passwd', 0), 4096)"),
    py("read /etc/shadow", "return os.read(os.open('/etc/shadow', 0), 4096)"),
    py("read the server's /proc/PID/environ", "return os.read(os.open('/proc/%d/environ' % k['server_pid'], 0), 100000)"),
    py("read the server's /proc/PID/mem", "fd = os.open('/proc/%d/mem' % k['server_pid'], 0)\nos.lseek(fd, 0x400000, 0)\nreturn os.read(fd, 4096)"),
    py("read the server's /proc/PID/cmdline", "return os.read(os.open('/proc/%d/cmdline' % k['server_pid'], 0), 4096)"),
    py("read /proc/self/environ", "return os.read(os.open('/proc/self/environ', 0), 100000)"),
    py("read /proc/1/environ", "return os.read(os.open('/proc/1/environ', 0), 100000)"),
    py("list the root directory", "return os.listdir('/')"),
    py("list the canary's directory", "return os.listdir(k['dir'])"),
    py("stat the canary", "return os.stat(k['canary'])"),
    py("read the server binary through /proc/self/exe", "return os.readlink('/proc/self/exe')"),
    py("walk /root", "return list(os.walk('/root'))[:5]"),
    py("read through a /dev/fd path", "return os.read(os.open('/dev/fd/3', 0), 100)"),
    // ---- host files: write ----
    py("overwrite the writable canary", "fd = os.open(k['writable'], os.O_WRONLY)\nreturn os.write(fd, b'pwned')"),
    py("truncate the writable canary", "return os.open(k['writable'], os.O_WRONLY | os.O_TRUNC)"),
    py("append to the writable canary", "return os.write(os.open(k['writable'], os.O_WRONLY | os.O_APPEND), b'x')"),
    py("os.truncate the writable canary", "return os.truncate(k['writable'], 0)"),
    py("create a file beside the canary", "return os.open(k['dir'] + '/new', os.O_WRONLY | os.O_CREAT, 0o666)"),
    py("create a file in /dev/shm", "return os.open('/dev/shm/sandlot-escape', os.O_RDWR | os.O_CREAT)"),
    py("delete the canary", "return os.unlink(k['canary'])"),
    py("rename the canary", "return os.rename(k['canary'], k['canary'] + '.moved')"),
    py("chmod the writable canary", "return os.chmod(k['writable'], 0o600)"),
    py("touch the writable canary's times", "return os.utime(k['writable'], (0, 0))"),
    py("symlink beside the canary", "return os.symlink('/etc/passwd', k['dir'] + '/link')"),
    py("hard-link the canary", "return os.link(k['canary'], k['dir'] + '/hard')"),
    py("make a directory", "return os.mkdir(k['dir'] + '/sub')"),
    py("make a fifo", "return os.mkfifo(k['dir'] + '/fifo')"),
    py("write our own /proc/self/mem", "return os.open('/proc/self/mem', os.O_RDWR)"),
    // ---- network ----
    py("TCP connect to the host's listener", "s = IMPORT('_socket').socket(2, 1)\nreturn s.connect(('127.0.0.1', k['port']))"),
    py("TCP through the socket module", "s = IMPORT('socket').create_connection(('127.0.0.1', k['port']), 2)\nreturn s.send(b'hi')"),
    py("UDP datagram to the host", "s = IMPORT('_socket').socket(2, 2)\nreturn s.sendto(b'hi', ('127.0.0.1', k['udp']))"),
    py("unix socket connect", "s = IMPORT('_socket').socket(1, 1)\nreturn s.connect(k['unix'])"),
    py("unix datagram to the listener's path", "s = IMPORT('_socket').socket(1, 2)\nreturn s.sendto(b'hi', k['unix'])"),
    py("DNS lookup of localhost then connect", "so = IMPORT('_socket')\nai = so.getaddrinfo('localhost', k['port'])\ns = so.socket(2, 1)\nreturn s.connect(ai[0][4][:2])"),
    py("DNS query sent by hand to a local resolver", "so = IMPORT('_socket')\ns = so.socket(2, 2)\nq = b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01'\nreturn s.sendto(q, ('127.0.0.1', k['udp']))"),
    py("IPv6 loopback connect", "s = IMPORT('_socket').socket(10, 1)\nreturn s.connect(('::1', k['port']))"),
    py("SystemHelper.httpRequest to the host's listener", "return SystemHelper.httpRequest('http://127.0.0.1:%d/' % k['port'])"),
    py("SystemHelper.httpRequest to a decimal spelling of loopback", "return SystemHelper.httpRequest('http://2130706433:%d/' % k['port'])"),
    py("raw packet socket", "return IMPORT('_socket').socket(17, 3)"),
    py("socketpair", "return IMPORT('_socket').socketpair()"),
    py("urllib to the host", "return IMPORT('urllib.request', fromlist=['x']).urlopen('http://127.0.0.1:%d/' % k['port'], timeout=2).read()"),
    // ---- processes ----
    py("os.system", "return os.system('touch ' + k['marker'])"),
    py("subprocess.run", "return IMPORT('subprocess').run(['/usr/bin/touch', k['marker']])"),
    py("os.popen", "return os.popen('touch ' + k['marker']).read()"),
    py("os.fork", "pid = os.fork()\nif pid == 0:\n    os.open(k['marker'], os.O_CREAT | os.O_WRONLY)\n    os._exit(0)\nreturn pid"),
    py("os.forkpty", "return os.forkpty()"),
    py("os.execv", "return os.execv('/usr/bin/touch', ['touch', k['marker']])"),
    py("os.posix_spawn", "return os.posix_spawn('/usr/bin/touch', ['touch', k['marker']], {})"),
    py("pty.spawn", "return IMPORT('pty').spawn(['/usr/bin/touch', k['marker']])"),
    py("a thread", "t = IMPORT('threading').Thread(target=lambda: None)\nt.start()\nreturn t"),
    py("kill the server", "return os.kill(k['server_pid'], 9)"),
    py("kill the zygote", "return os.kill(os.getppid(), 9)"),
    py("kill(-1) every process we may", "return os.kill(-1, 9)"),
    // The zygote runs as the children's uid and with their jail; these reach for what it may do.
    py("kill every sibling (the zygote's other children)", "z = os.getppid()\nhit = []\nfor p in range(z + 1, z + 400):\n    try:\n        os.kill(p, 9)\n        hit.append(p)\n    except OSError:\n        pass\nreturn hit"),
    py("signal the zygote through a pidfd", "fd = os.pidfd_open(os.getppid())\nreturn IMPORT('signal').pidfd_send_signal(fd, 9)"),
    py("read a sibling's memory", "z = os.getppid()\nfor p in range(z + 1, z + 400):\n    try:\n        return os.read(os.open('/proc/%d/mem' % p, 0), 16)\n    except OSError:\n        pass"),
    py("fork with the zygote's own clone flags", "pid = os.fork()\nif pid == 0:\n    os.open(k['marker'], os.O_CREAT | os.O_WRONLY)\n    os._exit(0)\nreturn pid"),
    // Allowed to the zygote, refused by each child to itself once set up: nothing else refuses
    // these, so they succeed if the child's own filter is missing or wrong. The last is refused
    // in the zygote's forms only (prlimit64 on itself for three limits).
    Case {
        name: "the zygote's own calls",
        lang: Lang::Py,
        code: Code::Body("so, rs = IMPORT('_socket'), IMPORT('resource')\nout = []\nfor name, call in (('memfd_create', lambda: os.memfd_create('x')), ('socketpair', lambda: so.socketpair()), ('pidfd_open', lambda: os.pidfd_open(os.getpid())), ('dup2', lambda: os.dup2(0, 9)), ('RLIMIT_NOFILE', lambda: rs.setrlimit(rs.RLIMIT_NOFILE, rs.getrlimit(rs.RLIMIT_NOFILE)))):\n    try:\n        call()\n        out.append(name + ' ran')\n    except OSError as e:\n        out.append('%s errno %d' % (name, e.errno))\nreturn ', '.join(out)"),
        expect: Expect::Result(r#"{"value":"'memfd_create errno 1, socketpair errno 1, pidfd_open errno 1, dup2 errno 1, RLIMIT_NOFILE errno 1'"}"#),
        timeout_ms: 5000,
    },
    py("wait for the zygote's children", "return os.waitpid(-1, 0)"),
    py("a process group of its own, as the zygote's children once took", "return os.setpgid(0, 0)"),
    py("move a descriptor over the job channel", "return os.dup2(0, 3)"),
    py("chroot (an exploit-only call kills the process)", "return os.chroot('/tmp')"),
    py("a fork bomb", "while True:\n    os.fork()"),
    // ---- the import policy and the routes around it ----
    // The native route allows `os` (for `os.path`); the kernel refuses what it reaches.
    py_raw("import os, then list /", "import os\ndef main(**k):\n    return {'x': os.listdir('/')}", Expect::Kind(&["runtime_error"]), 5000),
    // Python maps its extension modules' files executable; nothing else may execute: no
    // anonymous executable memory, no file mapping writable and executable at once.
    py_raw("executable memory: anonymous, and a file mapped writable", "import mmap, os, _decimal\ndef main(**k):\n    out = {}\n    fd = os.open(_decimal.__file__, os.O_RDONLY)\n    for name, fileno, flags in (('anonymous', -1, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS), ('file', fd, mmap.MAP_PRIVATE)):\n        try:\n            mmap.mmap(fileno, 4096, flags=flags, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n            out[name] = 'mapped'\n        except OSError as e:\n            out[name] = type(e).__name__\n    return out", Expect::Result(r#"{"anonymous":"PermissionError","file":"PermissionError"}"#), 5000),
    py_raw("import subprocess", "import subprocess\ndef main(**k):\n    return {}", NOT_ALLOWED, 5000),
    py_raw("import _socket", "def main(**k):\n    import _socket\n    return {}", NOT_ALLOWED, 5000),
    py_raw("import ctypes", "def main(**k):\n    import ctypes\n    return {}", NOT_ALLOWED, 5000),
    py_raw("__import__ of os, then list /", "def main(**k):\n    return {'x': str(__import__('os').listdir('/'))}", Expect::Kind(&["runtime_error"]), 5000),
    py_raw("import os, then system()", "import os\ndef main(**k):\n    return {'x': os.system('touch ' + k['marker'])}", NONE, 5000),
    py_raw("import shutil, then copy the canary", "import shutil\ndef main(**k):\n    shutil.copy(k['canary'], k['dir'] + '/copy')\n    return {}", NONE, 5000),
    py("os through random._os", "import random\nreturn random._os.read(random._os.open(k['canary'], 0), 100)"),
    py("os through uuid.os", "import uuid\nreturn uuid.os.system('touch ' + k['marker'])"),
    py("os through dataclasses.sys.modules", "import dataclasses\no = dataclasses.sys.modules['os']\nreturn o.read(o.open(k['canary'], 0), 100)"),
    py("the real import through print.__self__", "o = print.__self__.__import__('os')\nreturn o.read(o.open(k['canary'], 0), 100)"),
    py("os through a frame walk to the bootstrap's globals", "try:\n    1/0\nexcept ZeroDivisionError as e:\n    f = e.__traceback__.tb_frame\nwhile f.f_back:\n    f = f.f_back\nimp = f.f_globals['__builtins__']['__import__'] if isinstance(f.f_globals['__builtins__'], dict) else f.f_globals['__builtins__'].__import__\no = imp('os')\nreturn o.read(o.open(k['canary'], 0), 100)"),
    py("posix through BuiltinImporter", "bi = [c for c in object.__subclasses__() if c.__name__ == 'BuiltinImporter'][0]\np = bi.load_module('posix')\nreturn p.read(p.open(k['canary'], 0), 100)"),
    py("gc.get_objects to find os", "gc = IMPORT('gc')\nmods = [m for m in gc.get_objects() if type(m).__name__ == 'module' and getattr(m, '__name__', '') == 'os']\no = mods[0] if mods else os\nreturn o.system('touch ' + k['marker'])"),
    py("__builtins__ tampering: restore the real open", "__builtins__['open'] = OS['sys'].modules['io'].open\nreturn eval('open(p).read()', {'p': k['canary']})"),
    py("ctypes through the real import", "c = IMPORT('ctypes')\nlibc = c.CDLL(None)\nreturn libc.system(('touch ' + k['marker']).encode())"),
    py("code-object tampering: out-of-range constant index", "f = lambda: 0\nc = f.__code__\nf.__code__ = c.replace(co_code=bytes([151, 0, 100, 200, 83, 0]))\nreturn f()"),
    py("code-object tampering: a hand-built CodeType", "CT = type((lambda: 0).__code__)\nc = (lambda: 0).__code__.replace(co_consts=(), co_code=bytes([151, 0, 100, 5, 83, 0]))\nreturn eval(c)"),
    py("format-string attribute walk", "return '{0.__init__.__globals__[sys].modules[os].environ}'.format(OS['sys'].modules['os']._wrap_close)"),
    py("the environment through os.environ", "return dict(os.environ)"),
    // ---- resource abuse ----
    py_raw("allocate 10 GB", "def main(**k):\n    return {'x': len(bytearray(10 * 1024 ** 3))}", MEMORY, 5000),
    py_raw("grow a list without end", "def main(**k):\n    x = []\n    while True:\n        x.append(' ' * 4096)", MEMORY, 10000),
    py_raw("spin the CPU", "def main(**k):\n    while True:\n        pass", TIMEOUT, 1000),
    py_raw("sleep past the deadline", "import time\ndef main(**k):\n    time.sleep(100)", TIMEOUT, 1000),
    py_raw("print without end", "def main(**k):\n    while True:\n        print('x' * 1000)", OUTPUT, 10000),
    py_raw("recurse without end", "def main(**k):\n    def f(n):\n        return f(n + 1)\n    return f(0)", Expect::Kind(&["runtime_error"]), 5000),
    py_raw("recurse with the recursion limit lifted", "def main(**k):\n    OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__\n    OS['sys'].setrecursionlimit(10 ** 7)\n    def f(n):\n        return f(n + 1)\n    return f(0)", NONE, 1000),
    py_raw("return a huge value", "def main(**k):\n    return {'x': 'a' * (200 * 1024 * 1024)}", Expect::Kind(&["memory_limit", "output_limit"]), 5000),
    py_raw("a huge string by repetition", "def main(**k):\n    return {'x': len('a' * 10 ** 11)}", MEMORY, 5000),
    // ---- state leaking between runs ----
    py_raw("leave state behind (1/2)", "import json, math\ndef main(**k):\n    json.dumps = lambda *a, **kw: 'pwned'\n    math.pi = 3\n    __builtins__['len'] = lambda x: -1\n    OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__\n    OS['sys'].modules['math'] = None\n    return {}", NONE, 5000),
    py_raw("leave state behind (2/2)", "import json, math\ndef main(**k):\n    return {'dumps': json.dumps({'a': 1}), 'pi': round(math.pi, 2), 'len': len('ab')}", Expect::Result(r#"{"dumps":"{\"a\": 1}","pi":3.14,"len":2}"#), 5000),

    // ---- JavaScript ----
    js("the Function constructor reaches only the sandbox's global", "async function main() { const g = Function('return this')(); return {keys: Object.getOwnPropertyNames(g).filter(k => /^(std|os|process|require|fs|scriptArgs)$/.test(k)).sort(), std: typeof g.std, os: typeof g.os} }", NONE, 5000),
    js("constructor chain to Function", "function main() { const f = [].constructor.constructor('return typeof std + typeof os + typeof scriptArgs'); return {x: f()} }", Expect::Result(r#"{"x":"undefinedundefinedundefined"}"#), 5000),
    js("require('fs')", "function main({canary}) { return {x: require('fs').readFileSync(canary, 'utf8')} }", FS_OF_THE_RUN, 5000),
    js("require('child_process')", "function main({marker}) { require('child_process').execSync('touch ' + marker); return {} }", NOT_ALLOWED, 5000),
    js("require('net')", "function main({port}) { require('net').connect(port, '127.0.0.1'); return {} }", NOT_ALLOWED, 5000),
    js("require of an absolute path", "function main() { return {x: require('/etc/passwd')} }", NOT_ALLOWED, 5000),
    js("require of a relative path", "function main() { return {x: require('../../../../etc/passwd')} }", NOT_ALLOWED, 5000),
    js("import('fs')", "async function main({canary}) { const fs = await import('fs'); return {x: fs.readFileSync(canary, 'utf8')} }", FS_OF_THE_RUN, 5000),
    js("import('os') of quickjs-libc", "async function main({marker}) { const os = await import('os'); os.exec(['touch', marker]); return {} }", NOT_ALLOWED, 5000),
    js("import('std') of quickjs-libc", "async function main({canary}) { const std = await import('std'); return {x: std.loadFile(canary)} }", NOT_ALLOWED, 5000),
    js("import of a file URL", "async function main({canary}) { const m = await import('file://' + canary); return {x: String(m)} }", NOT_ALLOWED, 5000),
    js("a static import of fs", "import { readFileSync } from 'fs';\nexport function main({canary}) { return {x: readFileSync(canary, 'utf8')} }", FS_OF_THE_RUN, 5000),
    js("SystemHelper.httpRequest to the host's listener", "async function main({port}) { return await SystemHelper.httpRequest(`http://localhost:${port}/`) }", Expect::Kind(&["network_denied"]), 5000),
    js("the process object", "function main() { const p = globalThis.process; return {env: p && p.env ? JSON.stringify(p.env) : null, binding: typeof (p && p.binding)} }", NONE, 5000),
    js("prototype pollution (1/2)", "function main() { Object.prototype.polluted = 'yes'; Array.prototype.map = () => 'pwned'; JSON.stringify = () => 'pwned'; globalThis.leftover = 1; return {} }", NONE, 5000),
    js("prototype pollution (2/2)", "function main() { return {polluted: ({}).polluted === undefined, map: [1].map(x => x + 1)[0], leftover: typeof leftover} }", Expect::Result(r#"{"polluted":true,"map":2,"leftover":"undefined"}"#), 5000),
    js("a huge typed array", "function main() { const a = new Uint8Array(2 ** 31 - 1); a.fill(1); return {n: a.length} }", Expect::Kind(&["memory_limit", "runtime_error"]), 5000),
    js("a 10 GB ArrayBuffer", "function main() { return {n: new ArrayBuffer(10 * 1024 ** 3).byteLength} }", Expect::Kind(&["memory_limit", "runtime_error"]), 5000),
    js("grow an array without end", "function main() { const a = []; while (true) a.push('x'.repeat(4096) + a.length) }", MEMORY, 10000),
    js("spin the CPU", "function main() { while (true) {} }", TIMEOUT, 1000),
    js("spin in a promise job", "async function main() { await null; for (;;) {} }", TIMEOUT, 1000),
    js("Atomics.wait forever", "function main() { const s = new Int32Array(new SharedArrayBuffer(4)); Atomics.wait(s, 0, 0); return {} }", Expect::Kind(&["timeout", "runtime_error"]), 1000),
    js("recurse without end", "function main() { const f = n => f(n + 1) + 1; return {x: f(0)} }", Expect::Kind(&["runtime_error"]), 5000),
    js("deeply nested JSON", "function main() { return {x: JSON.parse('['.repeat(1000000) + ']'.repeat(1000000))} }", Expect::Kind(&["runtime_error", "memory_limit"]), 5000),
    js("print without end", "function main() { for (;;) console.log('x'.repeat(1000)) }", OUTPUT, 10000),
    js("return a huge value", "function main() { return {x: 'a'.repeat(200 * 1024 * 1024)} }", Expect::Kind(&["memory_limit", "output_limit"]), 5000),
    js("a huge string by repetition", "function main() { return {n: 'a'.repeat(2 ** 29).repeat(16).length} }", Expect::Kind(&["memory_limit", "runtime_error"]), 5000),
    js("eval of code that looks for the host", "function main() { return {x: eval('typeof std + typeof os + typeof require(\"url\")')} }", NONE, 5000),
    js("WebAssembly", "function main() { return {x: typeof WebAssembly} }", Expect::Result(r#"{"x":"undefined"}"#), 5000),
    js("replace require for the next run (1/2)", "function main() { globalThis.require = () => 'pwned'; console.log = () => {}; return {} }", NONE, 5000),
    js("replace require for the next run (2/2)", "function main() { let e; try { require('child_process') } catch (x) { e = x.code } return {code: e} }", Expect::Result(r#"{"code":"MODULE_NOT_ALLOWED"}"#), 5000),
];

struct Fixture {
    dir: PathBuf,
    canary: PathBuf,
    writable: PathBuf,
    token: String,
    marker: PathBuf,
    tcp: TcpListener,
    udp: UdpSocket,
    unix: UnixListener,
    unix_path: PathBuf,
}

impl Fixture {
    fn new() -> Self {
        let token = common::random_token();
        // World-readable and world-writable, so that only the jail (not file permissions)
        // stands between a child and these files.
        // Named by a second random value: paths appear in responses, the token must not.
        let name = common::random_token();
        let dir = std::env::temp_dir().join(format!("sandlot-escape-{name}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let canary = dir.join("canary");
        std::fs::write(&canary, &token).unwrap();
        std::fs::set_permissions(&canary, std::fs::Permissions::from_mode(0o644)).unwrap();
        let writable = dir.join("writable");
        std::fs::write(&writable, &token).unwrap();
        std::fs::set_permissions(&writable, std::fs::Permissions::from_mode(0o666)).unwrap();
        let marker = std::env::temp_dir().join(format!("sandlot-escape-marker-{name}"));
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        tcp.set_nonblocking(true).unwrap();
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_nonblocking(true).unwrap();
        let unix_path = std::env::temp_dir().join(format!("sandlot-escape-{name}.sock"));
        let unix = UnixListener::bind(&unix_path).unwrap();
        unix.set_nonblocking(true).unwrap();
        std::fs::set_permissions(&unix_path, std::fs::Permissions::from_mode(0o777)).unwrap();
        Self {
            dir,
            canary,
            writable,
            token,
            marker,
            tcp,
            udp,
            unix,
            unix_path,
        }
    }

    fn inputs(&self, server_pid: u32) -> Value {
        json!({
            "canary": self.canary,
            "writable": self.writable,
            "dir": self.dir,
            "marker": self.marker,
            "port": self.tcp.local_addr().unwrap().port(),
            "udp": self.udp.local_addr().unwrap().port(),
            "unix": self.unix_path,
            "server_pid": server_pid,
        })
    }

    /// Every effect an escape would have had; empty when the jail held.
    fn effects(&self) -> Vec<String> {
        let mut found = Vec::new();
        for path in [&self.canary, &self.writable] {
            match std::fs::read_to_string(path) {
                Ok(text) if text == self.token => {}
                other => found.push(format!("{} changed: {other:?}", path.display())),
            }
        }
        let mode = std::fs::metadata(&self.writable).map(|m| m.permissions().mode() & 0o777);
        if mode.as_ref().ok() != Some(&0o666) {
            found.push(format!("the writable canary's mode changed: {mode:?}"));
        }
        let mut entries: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        entries.sort();
        if entries != ["canary", "writable"] {
            found.push(format!("the canary directory now holds {entries:?}"));
        }
        if self.marker.exists() {
            found.push("a process was spawned: the marker file exists".into());
        }
        if Path::new("/dev/shm/sandlot-escape").exists() {
            found.push("/dev/shm/sandlot-escape was created".into());
        }
        match self.tcp.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => found.push(format!("the TCP listener got a connection: {other:?}")),
        }
        let mut buf = [0u8; 512];
        match self.udp.recv_from(&mut buf) {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => found.push(format!("the UDP socket got a datagram: {other:?}")),
        }
        match self.unix.accept() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            other => found.push(format!("the unix listener got a connection: {other:?}")),
        }
        found
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.unix_path);
        let _ = std::fs::remove_file(&self.marker);
    }
}

const API_KEY_PREFIX: &str = "escape-key-";
const CANARY_VAR: &str = "SANDLOT_ESCAPE_CANARY";

fn source(case: &Case, route: Route) -> (String, &'static str) {
    match (case.lang, case.code) {
        (Lang::Py, Code::Body(body)) => {
            let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
            let reach = if route == Route::Fastgpt {
                PY_REACH_FASTGPT
            } else {
                PY_REACH
            };
            (
                format!("{reach}{PY_MAIN}def _case(k):\n{indented}"),
                "python",
            )
        }
        (Lang::Py, Code::Raw(code)) => (code.to_owned(), "python"),
        (Lang::Js, Code::Raw(code)) => (code.to_owned(), "javascript"),
        (Lang::Js, Code::Body(_)) => unreachable!("JavaScript cases are whole programs"),
    }
}

#[test]
fn the_suite_has_enough_cases() {
    let python = CASES.iter().filter(|c| matches!(c.lang, Lang::Py)).count();
    let javascript = CASES.len() - python;
    assert!(python >= 50, "{python} Python cases");
    assert!(javascript >= 20, "{javascript} JavaScript cases");
}

/// The APIs a case can come through: each wraps the user's code its own way and reports in
/// its own shape, but the jail under them is the same and so must be the effects.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Route {
    Native,
    /// dify-sandbox's `/v1/sandbox/run`: the code is a script; the wrapper prints `main`'s
    /// result, as Dify's own runner does.
    Dify,
    /// FastGPT's `/sandbox/python` and `/sandbox/js`: `main` gets the variables.
    Fastgpt,
}

impl Route {
    /// The path, body and headers that send `case` through this route.
    fn request(
        self,
        case: &Case,
        inputs: &Value,
        key: &str,
    ) -> (String, Value, Vec<(String, String)>) {
        let (code, language) = source(case, self);
        let bearer = vec![("authorization".to_owned(), format!("Bearer {key}"))];
        match self {
            Route::Native => (
                "/v1/run".into(),
                json!({
                    "language": language,
                    "code": code,
                    "inputs": inputs,
                    "limits": {"timeout_ms": case.timeout_ms, "memory_mb": 256},
                }),
                bearer,
            ),
            Route::Dify => {
                let (code, language) = match case.lang {
                    Lang::Py => (
                        format!(
                            "{code}\nimport json as _json\nprint(_json.dumps(main(**_json.loads({})), default=str))\n",
                            Value::String(inputs.to_string())
                        ),
                        "python3",
                    ),
                    Lang::Js => (
                        format!("{code}\nPromise.resolve(main({inputs})).then(r => console.log(JSON.stringify(r)))\n"),
                        "nodejs",
                    ),
                };
                (
                    "/v1/sandbox/run".into(),
                    json!({"language": language, "code": code, "preload": "", "enable_network": true}),
                    vec![("x-api-key".to_owned(), key.to_owned())],
                )
            }
            Route::Fastgpt => {
                let path = match case.lang {
                    Lang::Py => "/sandbox/python",
                    Lang::Js => "/sandbox/js",
                };
                (
                    path.into(),
                    json!({"code": code, "variables": inputs}),
                    bearer,
                )
            }
        }
    }

    /// One line that says how the run ended, for the log.
    fn outcome(self, body: &Value) -> String {
        match self {
            Route::Native => match body["error"]["kind"].as_str() {
                Some(kind) => kind.to_owned(),
                None => body["result"].to_string(),
            },
            Route::Dify => match body["data"]["error"].as_str() {
                Some(error) if !error.is_empty() => error.lines().last().unwrap_or("").to_owned(),
                _ => body["data"]["stdout"].to_string(),
            },
            Route::Fastgpt => match body["success"].as_bool() {
                Some(true) => body["data"]["codeReturn"].to_string(),
                _ => body["message"].to_string(),
            },
        }
    }
}

#[test]
fn no_escape_has_an_effect() {
    suite_outcome(Route::Native);
}

#[test]
fn no_escape_has_an_effect_through_the_dify_api() {
    suite_outcome(Route::Dify);
}

#[test]
fn no_escape_has_an_effect_through_the_fastgpt_api() {
    suite_outcome(Route::Fastgpt);
}

/// The three routes' suites run at once, each with a server and a fixture of its own (most of
/// a suite's time is runs waiting out a deadline, which the test threads' count would
/// otherwise put one after another). The first route's test starts all three; each test then
/// reports its own route's outcome, with its panic if it failed.
fn suite_outcome(route: Route) {
    type Suites = Mutex<Vec<(Route, std::thread::JoinHandle<()>)>>;
    static SUITES: OnceLock<Suites> = OnceLock::new();
    let suites = SUITES.get_or_init(|| {
        Mutex::new(
            [Route::Native, Route::Dify, Route::Fastgpt]
                .into_iter()
                .map(|route| (route, std::thread::spawn(move || run_suite(route))))
                .collect(),
        )
    });
    let handle = {
        let mut suites = suites.lock().unwrap_or_else(|e| e.into_inner());
        let at = suites.iter().position(|(r, _)| *r == route).unwrap();
        suites.remove(at).1
    };
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

/// Sends every case through `route` and checks its effects. What a case must *return* is
/// checked on the native route only: the peers' APIs report the same ending in their own words.
fn run_suite(route: Route) {
    let key = format!("{API_KEY_PREFIX}{}", common::random_token());
    let env_canary = common::random_token();
    let server = Arc::new(common::start(
        &["--api-key", &key, "--default-timeout-ms", "3000"],
        &[(CANARY_VAR, env_canary.as_str())],
    ));
    let fixture = Fixture::new();
    let inputs = fixture.inputs(server.pid);

    // Runs beside the suite the whole time: a neighbour's escape must not disturb it.
    let stop = Arc::new(AtomicBool::new(false));
    let neighbour_runs = Arc::new(AtomicUsize::new(0));
    let neighbour = {
        let (server, key, stop, runs) = (
            server.clone(),
            key.clone(),
            stop.clone(),
            neighbour_runs.clone(),
        );
        std::thread::spawn(move || -> Result<(), String> {
            let mut n = 1000;
            while !stop.load(Ordering::Relaxed) {
                common::control(&server, &key, n)?;
                runs.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            Ok(())
        })
    };

    let mut failures = Vec::new();
    for (i, case) in CASES.iter().enumerate() {
        let (path, body, headers) = route.request(case, &inputs, &key);
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let reply = server.post(&path, &body.to_string(), &headers);
        let outcome = route.outcome(&reply.body);
        println!(
            "{route:?} {:<70} {}",
            case.name,
            outcome.chars().take(100).collect::<String>()
        );
        let mut problems = fixture.effects();
        if reply.status != 200 {
            problems.push(format!("HTTP {}", reply.status));
        }
        for (secret, what) in [
            (&fixture.token, "the canary's content"),
            (&key, "the API key"),
            (&env_canary, "the server's canary variable"),
        ] {
            if reply.text.contains(secret.as_str()) {
                problems.push(format!("the response holds {what}"));
            }
        }
        if reply.text.contains("root:x:0:0") {
            problems.push("the response holds /etc/passwd".into());
        }
        let expect = if route == Route::Native {
            case.expect
        } else {
            Expect::Effects
        };
        match expect {
            Expect::Effects => {}
            Expect::Kind(kinds) => {
                let kind = reply.body["error"]["kind"].as_str().unwrap_or("none");
                if !kinds.contains(&kind) {
                    problems.push(format!("error kind {kind}, expected one of {kinds:?}"));
                }
            }
            Expect::Result(expected) => {
                let expected: Value = serde_json::from_str(expected).unwrap();
                if reply.body["result"] != expected {
                    problems.push(format!(
                        "result {}, expected {expected}",
                        reply.body["result"]
                    ));
                }
            }
        }
        if let Err(e) = common::control(&server, &key, i as u64) {
            problems.push(format!("the server answers wrongly afterwards: {e}"));
        }
        if !problems.is_empty() {
            let excerpt: String = reply.text.chars().take(600).collect();
            failures.push(format!(
                "{}: {}\n    response: {excerpt}",
                case.name,
                problems.join("; ")
            ));
        }
    }

    stop.store(true, Ordering::Relaxed);
    let neighbour = neighbour.join().unwrap();
    let ready = server.get("/readyz");
    assert!(
        failures.is_empty(),
        "{route:?}: {} of {} cases escaped or misbehaved:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    assert_eq!(neighbour, Ok(()), "a concurrent run was disturbed");
    assert!(neighbour_runs.load(Ordering::Relaxed) > 0);
    // No case took a zygote down (a killed zygote would have been restarted).
    for zygote in ready.body["zygotes"].as_array().unwrap() {
        assert_eq!(zygote["restarts"], 0, "{}", ready.text);
    }
}

// ---- escapes whose effect the shared fixture cannot see ----
//
// Each of these needs a server of its own (a setting, or a zygote it may take down) or an
// effect of its own (a number it must not learn, code it must not execute).

/// The Python zygote's pid and restart count: a zygote a run killed has a new pid and one
/// more restart.
fn python_zygote(server: &common::Server) -> Value {
    let ready = server.get("/readyz");
    let zygotes = ready.body["zygotes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let python = zygotes.iter().find(|z| z["kind"] == "python");
    json!([python.map(|z| &z["pid"]), python.map(|z| &z["restarts"])])
}

/// `F_SETOWN`/`F_SETOWN_EX` naming the zygote and `O_ASYNC` on the job channel would make the
/// kernel send SIGIO (default action: terminate) to the zygote the next time the server writes
/// to the channel — which a brokered request makes it do. Landlock's signal scope (ABI 6)
/// stops it on new kernels; seccomp must stop it on the ABI 4 kernels sandlot accepts, so the
/// case runs both with the scope and with the server's Landlock capped at ABI 4.
#[test]
fn a_sigio_armed_through_fcntl_reaches_no_process() {
    const CODE: &str = "\
OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__
os = OS['sys'].modules['os']
IMPORT = OS['sys'].modules['builtins'].__import__
def main(**k):
    fcntl, struct = IMPORT('fcntl'), IMPORT('struct')
    zygote = os.getppid()
    out = {}
    def attempt(name, call):
        try:
            call()
            out[name] = 'done'
        except OSError as e:
            out[name] = type(e).__name__
    attempt('F_SETOWN', lambda: fcntl.fcntl(3, fcntl.F_SETOWN, zygote))
    attempt('F_SETOWN_EX', lambda: fcntl.fcntl(3, 15, struct.pack('ii', 1, zygote)))
    attempt('F_SETSIG', lambda: fcntl.fcntl(3, 10, 0))
    attempt('O_ASYNC', lambda: fcntl.fcntl(3, fcntl.F_SETFL, fcntl.fcntl(3, fcntl.F_GETFL) | 0o20000))
    for _ in range(3):
        try:
            SystemHelper.httpRequest('http://127.0.0.1:1/')
        except BaseException:
            pass
    return out
";
    let mut not_refused = Vec::new();
    // Both servers start at once.
    let servers = [
        ("with Landlock's signal scope", vec![]),
        (
            "with Landlock capped at ABI 4",
            vec![("SANDLOT_TESTING_LANDLOCK_ABI_MAX", "4")],
        ),
    ]
    .map(|(scope, envs)| (scope, std::thread::spawn(move || common::start(&[], &envs))));
    for (scope, server) in servers {
        let server = server.join().unwrap();
        let before = python_zygote(&server);
        let zygote = common::processes::zygote_pid(&server, "python").expect("a python zygote");
        let reply = server.post(
            "/v1/run",
            &json!({"language": "python", "code": CODE, "inputs": {}}).to_string(),
            &[],
        );
        println!("{scope}: {}", reply.text);
        // A SIGIO is raised as the server writes to the channel, before the run answers: by
        // now it has either ended the zygote or waits, pending.
        common::processes::assert_alive_without_pending(
            zygote,
            nix::sys::signal::Signal::SIGIO,
            scope,
        );
        assert_eq!(
            python_zygote(&server),
            before,
            "{scope}: a zygote died after the run: {}",
            reply.text
        );
        common::control(&server, "", 7).unwrap_or_else(|e| panic!("{scope}: {e}"));
        let result = &reply.body["result"];
        for call in ["F_SETOWN", "F_SETOWN_EX", "F_SETSIG", "O_ASYNC"] {
            if result[call] != "PermissionError" {
                not_refused.push(format!("{scope}: {call}: {}", result[call]));
            }
        }
    }
    // The effect above is what matters; that seccomp refuses the calls themselves, on every
    // kernel, is checked once both servers have shown it.
    assert!(not_refused.is_empty(), "not refused: {not_refused:?}");
}

/// A host file's size and modification time, through every way to stat a path that does not
/// open it for reading (which Landlock would judge): an `O_PATH` descriptor, `newfstatat` and
/// `statx` with `AT_EMPTY_PATH` and a path after all. The file's size and mtime are random, so
/// the response holding either means the child learned it.
#[test]
fn a_host_file_s_metadata_stays_unknown() {
    let server = common::shared();
    let dir = std::env::temp_dir().join(format!("sandlot-metadata-{}", common::random_token()));
    std::fs::create_dir(&dir).unwrap();
    let secret = dir.join("secret");
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&common::random_token().as_bytes()[..8]);
    let seed = u64::from_le_bytes(seed);
    let size = 100_000 + seed % 900_000;
    let mtime = 1_000_000_000 + (seed >> 20) % 1_000_000_000;
    std::fs::write(&secret, vec![b'x'; size as usize]).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&secret)
        .unwrap()
        .set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime))
        .unwrap();
    const CODE: &str = "\
OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__
os = OS['sys'].modules['os']
IMPORT = OS['sys'].modules['builtins'].__import__
def main(path):
    ctypes, struct = IMPORT('ctypes'), IMPORT('struct')
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    def attempt(name, call):
        try:
            out[name] = call()
        except BaseException as e:
            out[name] = type(e).__name__
    def o_path():
        st = os.fstat(os.open(path, os.O_PATH))
        return struct.pack('<qq', st.st_size, int(st.st_mtime)).hex()
    def raw(number, *args):
        buf = ctypes.create_string_buffer(512)
        args = [buf if a is None else a for a in args]
        if libc.syscall(number, *args) != 0:
            return 'errno %d' % ctypes.get_errno()
        return buf.raw.hex()
    attempt('O_PATH then fstat', o_path)
    attempt('newfstatat with AT_EMPTY_PATH', lambda: raw(262, -100, path.encode(), None, 0x1000))
    attempt('statx with AT_EMPTY_PATH', lambda: raw(332, -100, path.encode(), 0x1000, 0x7ff, None))
    attempt('statx', lambda: raw(332, -100, path.encode(), 0, 0x7ff, None))
    attempt('os.stat', lambda: struct.pack('<qq', os.stat(path).st_size, int(os.stat(path).st_mtime)).hex())
    return out
";
    let reply = server.post(
        "/v1/run",
        &json!({"language": "python", "code": CODE, "inputs": {"path": secret}}).to_string(),
        &[],
    );
    println!("{}", reply.text);
    let _ = std::fs::remove_dir_all(&dir);
    let hex = |n: u64| {
        n.to_le_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(
        reply.body["result"].is_object(),
        "the run did not finish: {}",
        reply.text
    );
    for (what, value) in [("size", size), ("mtime", mtime)] {
        assert!(
            !reply.text.contains(&hex(value)),
            "the child learned the host file's {what}: {}",
            reply.text
        );
    }
}

/// The output file (fd 4) is writable and shared: mapped a second time executable, what the
/// code writes through one mapping would run through the other. Tried on fd 4 and on a copy
/// of it, through the native and the Dify API; the machine code returns 42 if it ran.
#[cfg(target_arch = "x86_64")]
#[test]
fn bytes_written_to_the_output_file_cannot_be_executed() {
    const CODE: &str = "\
OS = [c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close'][0].__init__.__globals__
os = OS['sys'].modules['os']
IMPORT = OS['sys'].modules['builtins'].__import__
def main(**k):
    ctypes = IMPORT('ctypes')
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    out = {}
    def attempt(name, fd):
        writable = libc.mmap(None, 4096, 3, 1, fd, 4096)
        executable = libc.mmap(None, 4096, 5, 1, fd, 4096)
        if writable in (None, 2 ** 64 - 1) or executable in (None, 2 ** 64 - 1):
            return 'refused: errno %d' % ctypes.get_errno()
        ctypes.memmove(writable, b'\\xb8\\x2a\\x00\\x00\\x00\\xc3', 6)
        return 'executed, returned %d' % ctypes.CFUNCTYPE(ctypes.c_int)(executable)()
    for name, fd in (('fd 4', lambda: 4), ('a copy of fd 4', lambda: os.dup(4))):
        try:
            out[name] = attempt(name, fd())
        except BaseException as e:
            out[name] = type(e).__name__
    return out
";
    let server = common::shared();
    let native = server.post(
        "/v1/run",
        &json!({"language": "python", "code": CODE, "inputs": {}}).to_string(),
        &[],
    );
    let dify_code = format!("{CODE}\nimport json as _json\nprint(_json.dumps(main()))\n");
    let dify = server.post(
        "/v1/sandbox/run",
        &json!({"language": "python3", "code": dify_code, "preload": ""}).to_string(),
        &[],
    );
    for (route, reply) in [("native", native), ("dify", dify)] {
        println!("{route}: {}", reply.text);
        assert_eq!(reply.status, 200, "{route}: {}", reply.text);
        assert!(
            !reply.text.contains("executed"),
            "{route}: code written to the output file ran: {}",
            reply.text
        );
    }
}
