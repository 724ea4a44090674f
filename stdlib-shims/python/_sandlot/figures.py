"""matplotlib figures a run left open, returned as PNG images."""

import sys

from _sandlot.imports import real_import

MAX_IMAGES = 16
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES_TOTAL_BYTES = 10 * 1024 * 1024


def collect():
    """The open figures as `{"format": "png", "base64": ...}` each (none without pyplot)."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return []
    images = []
    total = 0
    try:
        io = real_import("io")
        base64 = real_import("base64")
        for number in plt.get_fignums()[:MAX_IMAGES]:
            buffer = io.BytesIO()
            plt.figure(number).savefig(buffer, format="png")
            data = buffer.getvalue()
            if len(data) > MAX_IMAGE_BYTES:
                sys.stderr.write(f"sandlot: figure {number} is over {MAX_IMAGE_BYTES} bytes "
                                 "as PNG and was left out\n")
                continue
            if total + len(data) > MAX_IMAGES_TOTAL_BYTES:
                sys.stderr.write(f"sandlot: figure {number} would take the figures over "
                                 f"{MAX_IMAGES_TOTAL_BYTES} bytes as PNG and was left out\n")
                continue
            total += len(data)
            images.append({"format": "png", "base64": base64.b64encode(data).decode("ascii")})
        plt.close("all")
    except BaseException as e:
        sys.stderr.write(f"sandlot: a figure could not be rendered: {e!r}\n")
    return images
