import logging
import os
import sys
import urllib.parse
import warnings

logger = logging.getLogger(__name__)

def main(url: str) -> dict:
    warnings.warn("this is only a warning")
    logger.info("parsing %s", url)
    parts = urllib.parse.urlparse(url)
    query = urllib.parse.parse_qs(parts.query)
    name, ext = os.path.splitext(os.path.basename(parts.path))
    return {
        "host": parts.netloc,
        "query": query,
        "file": name,
        "ext": ext,
        "joined": os.path.join("reports", name + ".csv"),
        "quoted": urllib.parse.quote("a b&c/d"),
        "encoded": urllib.parse.urlencode({"q": "sandlot 沙箱", "page": 2}),
        "python3": sys.version_info[0] == 3,
        "max_int": sys.maxsize > 2 ** 31,
    }
