//! What `main` returned, as JSON, written without `JSON.stringify` when it is plain data.
//!
//! QuickJS's stringify allocates for every value it writes: each object's keys as a new array
//! of strings, each key quoted anew, each array index turned into a string for a `toJSON` call
//! that plain data never makes. A 1 MB result spent ~16 ms there, 45% of its child's CPU.
//! Plain data — objects and arrays with the standard prototypes, holding strings, numbers,
//! booleans, null and undefined — is written here instead, each key quoted once per run.
//!
//! Reading an own data property runs no user code, so the walk can give up at any point
//! without a trace: at a getter, a `toJSON`, a Date, a Proxy, a lone surrogate, a cycle, a
//! result past the output limit. `JSON.stringify` then does the whole value, with all of its
//! rules, as before.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::OnceLock;

use rquickjs::{qjs, Ctx, Value};

/// Deeper than this, the walk gives up (a cycle always does); stringify has its own guard.
const MAX_DEPTH: u32 = 200;

/// Something plain data does not hold; `JSON.stringify` takes over.
struct NotPlain;

/// The realm's plain classes and its Object.prototype and Array.prototype, learned once in the
/// zygote: the intrinsics live as long as the context and never move.
#[derive(Clone, Copy)]
pub struct Realm {
    object_class: qjs::JSClassID,
    array_class: qjs::JSClassID,
    object_prototype: usize,
    array_prototype: usize,
}

static REALM: OnceLock<Realm> = OnceLock::new();

/// Learns the realm's plain classes and prototypes (in the zygote, before any user code).
pub fn learn_realm(ctx: &Ctx<'_>) {
    let raw_ctx = ctx.as_raw().as_ptr();
    // SAFETY: `raw_ctx` is the live context; every value made here is freed here.
    let realm = unsafe {
        let object = qjs::JS_NewObject(raw_ctx);
        let array = qjs::JS_NewArray(raw_ctx);
        let object_prototype = qjs::JS_GetPrototype(raw_ctx, object);
        let array_prototype = qjs::JS_GetPrototype(raw_ctx, array);
        let realm = Realm {
            object_class: qjs::JS_GetClassID(object),
            array_class: qjs::JS_GetClassID(array),
            object_prototype: qjs::JS_VALUE_GET_PTR(object_prototype) as usize,
            array_prototype: qjs::JS_VALUE_GET_PTR(array_prototype) as usize,
        };
        for v in [object, array, object_prototype, array_prototype] {
            qjs::JS_FreeValue(raw_ctx, v);
        }
        realm
    };
    let _ = REALM.set(realm);
}

/// `value` as JSON if it is a plain object or array and its JSON fits in `limit` bytes.
pub fn to_json(ctx: &Ctx<'_>, value: &Value<'_>, limit: usize) -> Option<String> {
    let realm = *REALM.get()?;
    let raw_ctx = ctx.as_raw().as_ptr();
    // SAFETY: `raw_ctx` is the live context `ctx` borrows, and `value` belongs to it; the
    // realm's prototypes are alive as long as it is. The walk frees every reference it takes
    // and calls no user code.
    unsafe {
        let json = Walk::new(raw_ctx, realm, limit).and_then(|mut walk| {
            let written = walk.value(value.as_raw(), 0);
            written.ok().map(|()| walk.out)
        });
        if qjs::JS_HasException(raw_ctx) {
            // Only running out of memory throws here; stringify will meet it again.
            qjs::JS_FreeValue(raw_ctx, qjs::JS_GetException(raw_ctx));
            return None;
        }
        String::from_utf8(json?).ok()
    }
}

struct Walk {
    ctx: *mut qjs::JSContext,
    out: Vec<u8>,
    limit: usize,
    /// Each key as it is written (quoted, with its colon), by atom: records repeat their keys.
    keys: HashMap<qjs::JSAtom, Box<[u8]>>,
    realm: Realm,
}

impl Walk {
    /// None when user code gave Object.prototype or Array.prototype a `toJSON` (or
    /// Array.prototype another prototype), which plain data would then inherit.
    unsafe fn new(ctx: *mut qjs::JSContext, realm: Realm, limit: usize) -> Option<Self> {
        let object_prototype = object_at(realm.object_prototype);
        let array_prototype = object_at(realm.array_prototype);
        let to_json = qjs::JS_NewAtom(ctx, c"toJSON".as_ptr());
        let plain = prototype_of(ctx, array_prototype) == realm.object_prototype
            && !has_own(ctx, object_prototype, to_json)
            && !has_own(ctx, array_prototype, to_json);
        qjs::JS_FreeAtom(ctx, to_json);
        plain.then(|| Self {
            ctx,
            out: Vec::with_capacity(256),
            limit,
            keys: HashMap::new(),
            realm,
        })
    }

    /// Writes `v` (borrowed, not freed).
    unsafe fn value(&mut self, v: qjs::JSValue, depth: u32) -> Result<(), NotPlain> {
        match qjs::JS_VALUE_GET_TAG(v) {
            qjs::JS_TAG_INT => self.write(&qjs::JS_VALUE_GET_INT(v)),
            qjs::JS_TAG_FLOAT64 => self.number(v)?,
            qjs::JS_TAG_BOOL => {
                let text: &[u8] = if qjs::JS_VALUE_GET_BOOL(v) {
                    b"true"
                } else {
                    b"false"
                };
                self.out.extend_from_slice(text);
            }
            qjs::JS_TAG_NULL => self.out.extend_from_slice(b"null"),
            qjs::JS_TAG_STRING | qjs::JS_TAG_STRING_ROPE => {
                let text = Text::of(self.ctx, v);
                let text = text.as_str()?;
                // Not even copied when it cannot fit.
                if self.out.len() + text.len() > self.limit {
                    return Err(NotPlain);
                }
                self.write(text);
            }
            qjs::JS_TAG_OBJECT if depth < MAX_DEPTH => {
                let class = qjs::JS_GetClassID(v);
                if class == self.realm.array_class {
                    self.array(v, depth)?;
                } else if class == self.realm.object_class {
                    self.object(v, depth)?;
                } else {
                    return Err(NotPlain);
                }
            }
            _ => return Err(NotPlain),
        }
        if self.out.len() > self.limit {
            return Err(NotPlain);
        }
        Ok(())
    }

    /// A number as JavaScript prints it; NaN and the infinities as null, like stringify.
    unsafe fn number(&mut self, v: qjs::JSValue) -> Result<(), NotPlain> {
        let f = qjs::JS_VALUE_GET_FLOAT64(v);
        if !f.is_finite() {
            self.out.extend_from_slice(b"null");
        } else if f.fract() == 0.0 && f.abs() < 1e15 {
            // Exact in an i64; -0 prints as 0, as in JavaScript.
            self.write(&(f as i64));
        } else {
            js_number(f, &mut self.out);
        }
        Ok(())
    }

    /// `value` as serde_json writes it: a string's escapes are stringify's (`"`, `\\`, the
    /// short forms of \b \f \n \r \t, and \u00xx for other controls), integers alike.
    fn write<T: serde::Serialize + ?Sized>(&mut self, value: &T) {
        // Writing a str or an integer into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.out, value);
    }

    unsafe fn array(&mut self, v: qjs::JSValue, depth: u32) -> Result<(), NotPlain> {
        if prototype_of(self.ctx, v) != self.realm.array_prototype {
            return Err(NotPlain);
        }
        let mut len = 0i64;
        if qjs::JS_GetLength(self.ctx, v, &mut len) < 0 || len > u32::MAX as i64 {
            return Err(NotPlain);
        }
        self.out.push(b'[');
        for i in 0..len as u32 {
            if i > 0 {
                self.out.push(b',');
            }
            let atom = qjs::JS_NewAtomUInt32(self.ctx, i);
            let element = self.own_data(v, atom);
            qjs::JS_FreeAtom(self.ctx, atom);
            let element = element?;
            let written = if qjs::JS_VALUE_GET_TAG(element) == qjs::JS_TAG_UNDEFINED {
                self.out.extend_from_slice(b"null");
                Ok(())
            } else {
                self.value(element, depth + 1)
            };
            qjs::JS_FreeValue(self.ctx, element);
            written?;
        }
        self.out.push(b']');
        Ok(())
    }

    unsafe fn object(&mut self, v: qjs::JSValue, depth: u32) -> Result<(), NotPlain> {
        let prototype = prototype_of(self.ctx, v);
        if prototype != 0 && prototype != self.realm.object_prototype {
            return Err(NotPlain);
        }
        let mut tab: *mut qjs::JSPropertyEnum = std::ptr::null_mut();
        let mut len = 0u32;
        let flags = (qjs::JS_GPN_STRING_MASK | qjs::JS_GPN_ENUM_ONLY) as i32;
        if qjs::JS_GetOwnPropertyNames(self.ctx, &mut tab, &mut len, v, flags) < 0 {
            return Err(NotPlain);
        }
        let written = self.members(v, std::slice::from_raw_parts(tab, len as usize), depth);
        qjs::JS_FreePropertyEnum(self.ctx, tab, len);
        written
    }

    unsafe fn members(
        &mut self,
        v: qjs::JSValue,
        properties: &[qjs::JSPropertyEnum],
        depth: u32,
    ) -> Result<(), NotPlain> {
        self.out.push(b'{');
        let mut first = true;
        for property in properties {
            let member = self.own_data(v, property.atom)?;
            // Like stringify, a member whose value is undefined is left out.
            let written = if qjs::JS_VALUE_GET_TAG(member) == qjs::JS_TAG_UNDEFINED {
                Ok(())
            } else {
                if !first {
                    self.out.push(b',');
                }
                first = false;
                self.key(property.atom)
                    .and_then(|()| self.value(member, depth + 1))
            };
            qjs::JS_FreeValue(self.ctx, member);
            written?;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// `"key":`, quoted once per atom; an own `toJSON` is not plain.
    unsafe fn key(&mut self, atom: qjs::JSAtom) -> Result<(), NotPlain> {
        if let Some(key) = self.keys.get(&atom) {
            self.out.extend_from_slice(key);
            return Ok(());
        }
        let mut len = 0;
        let ptr = qjs::JS_AtomToCStringLen(self.ctx, &mut len, atom);
        let name = Text {
            ctx: self.ctx,
            ptr,
            len: len as usize,
        };
        let name = name.as_str()?;
        if name == "toJSON" {
            return Err(NotPlain);
        }
        let mut key = serde_json::to_vec(name).map_err(|_| NotPlain)?;
        key.push(b':');
        self.out.extend_from_slice(&key);
        self.keys.insert(atom, key.into_boxed_slice());
        Ok(())
    }

    /// The value of `v`'s own data property `atom`, a new reference; a getter or a hole is
    /// not plain.
    unsafe fn own_data(
        &self,
        v: qjs::JSValue,
        atom: qjs::JSAtom,
    ) -> Result<qjs::JSValue, NotPlain> {
        let mut desc = std::mem::MaybeUninit::<qjs::JSPropertyDescriptor>::uninit();
        let found = qjs::JS_GetOwnProperty(self.ctx, desc.as_mut_ptr(), v, atom);
        if found != 1 {
            return Err(NotPlain);
        }
        let desc = desc.assume_init();
        qjs::JS_FreeValue(self.ctx, desc.getter);
        qjs::JS_FreeValue(self.ctx, desc.setter);
        if desc.flags & qjs::JS_PROP_GETSET as i32 != 0 {
            qjs::JS_FreeValue(self.ctx, desc.value);
            return Err(NotPlain);
        }
        Ok(desc.value)
    }
}

/// A finite `f` as JavaScript's Number::toString writes it. Its digits are the shortest that
/// read back as `f` (serde_json's, which are ryu's); only the layout differs from ryu's: no
/// `.0`, plain digits up to 21 places, and `1e+21`, `1.5e-7` beyond.
fn js_number(f: f64, out: &mut Vec<u8>) {
    let mut text = Vec::with_capacity(32);
    // Writing a finite f64 into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut text, &f);
    let (sign, text) = match text.split_first() {
        Some((b'-', rest)) => ("-", rest),
        _ => ("", &text[..]),
    };
    let (mantissa, exponent) = match text.iter().position(|&b| b == b'e') {
        Some(e) => (
            &text[..e],
            std::str::from_utf8(&text[e + 1..])
                .ok()
                .and_then(|x| x.parse::<i32>().ok())
                .unwrap_or(0),
        ),
        None => (text, 0),
    };
    let point = mantissa
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(mantissa.len());
    let mut digits: Vec<u8> = mantissa.iter().copied().filter(|&b| b != b'.').collect();
    let leading = digits.iter().take_while(|&&b| b == b'0').count();
    digits.drain(..leading);
    while digits.last() == Some(&b'0') {
        digits.pop();
    }
    // The value is 0.DIGITS × 10^n, DIGITS without leading or trailing zeros.
    let n = point as i32 - leading as i32 + exponent;
    let k = digits.len() as i32;
    out.extend_from_slice(sign.as_bytes());
    if k <= n && n <= 21 {
        out.extend_from_slice(&digits);
        out.resize(out.len() + (n - k) as usize, b'0');
    } else if 0 < n && n <= 21 {
        out.extend_from_slice(&digits[..n as usize]);
        out.push(b'.');
        out.extend_from_slice(&digits[n as usize..]);
    } else if -6 < n && n <= 0 {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-n) as usize, b'0');
        out.extend_from_slice(&digits);
    } else {
        out.push(digits[0]);
        if k > 1 {
            out.push(b'.');
            out.extend_from_slice(&digits[1..]);
        }
        let e = n - 1;
        out.extend_from_slice(format!("e{}{}", if e < 0 { '-' } else { '+' }, e.abs()).as_bytes());
    }
}

/// A string's UTF-8 from QuickJS, freed on drop.
struct Text {
    ctx: *mut qjs::JSContext,
    ptr: *const std::ffi::c_char,
    len: usize,
}

impl Text {
    unsafe fn of(ctx: *mut qjs::JSContext, v: qjs::JSValue) -> Self {
        let mut len = 0;
        let ptr = qjs::JS_ToCStringLen2(ctx, &mut len, v, false);
        Self {
            ctx,
            ptr,
            len: len as usize,
        }
    }

    /// A lone surrogate is kept as its 3 bytes, which are not UTF-8 (stringify escapes it as
    /// `\udXXX`): not plain.
    fn as_str(&self) -> Result<&str, NotPlain> {
        if self.ptr.is_null() {
            return Err(NotPlain);
        }
        // SAFETY: QuickJS wrote `len` bytes at `ptr`, which live until `drop`.
        let bytes = unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) };
        std::str::from_utf8(bytes).map_err(|_| NotPlain)
    }
}

impl Drop for Text {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from JS_ToCStringLen2 or JS_AtomToCStringLen on `ctx`.
            unsafe { qjs::JS_FreeCString(self.ctx, self.ptr) };
        }
    }
}

/// The object at `address`, as a borrowed value.
fn object_at(address: usize) -> qjs::JSValue {
    qjs::JS_MKPTR(qjs::JS_TAG_OBJECT, address as *mut c_void)
}

/// The address of the prototype of `v`, an ordinary object or array (reading it runs no code);
/// 0 for a null prototype.
unsafe fn prototype_of(ctx: *mut qjs::JSContext, v: qjs::JSValue) -> usize {
    let prototype = qjs::JS_GetPrototype(ctx, v);
    let address = if qjs::JS_VALUE_GET_TAG(prototype) == qjs::JS_TAG_OBJECT {
        qjs::JS_VALUE_GET_PTR(prototype) as usize
    } else {
        0
    };
    qjs::JS_FreeValue(ctx, prototype);
    address
}

/// Whether the ordinary object `v` has an own property `atom`.
unsafe fn has_own(ctx: *mut qjs::JSContext, v: qjs::JSValue, atom: qjs::JSAtom) -> bool {
    qjs::JS_GetOwnProperty(ctx, std::ptr::null_mut(), v, atom) != 0
}
