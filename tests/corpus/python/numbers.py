import math
import random
import statistics
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

def main(values):
    rng = random.Random(7)
    sample = rng.sample(values, 3)
    return {
        "money": str((Decimal("19.995") * 3).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)),
        "fraction": str(Fraction(1, 3) + Fraction(1, 6)),
        "mean": statistics.mean(values),
        "median": statistics.median(values),
        "stdev": round(statistics.stdev(values), 4),
        "hypot": math.hypot(3, 4),
        "sample_is_subset": set(sample) <= set(values),
        "same_seed_same_draw": sample == random.Random(7).sample(values, 3),
    }
