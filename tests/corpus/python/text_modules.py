import difflib
import html
import string
import textwrap
import unicodedata

def main(text):
    return {
        "short": textwrap.shorten(text, width=20, placeholder="..."),
        "wrapped": textwrap.wrap(text, width=12),
        "escaped": html.escape("<b>Tom & Jerry</b>"),
        "unescaped": html.unescape("&lt;&eacute;&gt;"),
        "nfkc": unicodedata.normalize("NFKC", "ｆｕｌｌ－ｗｉｄｔｈ１２３"),
        "ratio": round(difflib.SequenceMatcher(None, "workflow", "workflows").ratio(), 3),
        "close": difflib.get_close_matches("appel", ["ape", "apple", "peach"]),
        "template": string.Template("$who likes $what").substitute(who="Ann", what="tea"),
    }
