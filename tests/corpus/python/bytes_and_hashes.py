import base64
import gzip
import hashlib
import hmac
import struct
import zlib

def main(text):
    data = text.encode()
    packed = gzip.compress(data)
    return {
        "roundtrip": gzip.decompress(packed).decode() == text,
        "crc32": zlib.crc32(data),
        "b64": base64.b64encode(data).decode(),
        "urlsafe": base64.urlsafe_b64encode(b"\xfb\xff").decode(),
        "struct": list(struct.unpack("<HI", struct.pack("<HI", 7, 65536))),
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
        "hmac": hmac.new(b"key", data, "sha256").hexdigest()[:16],
    }
