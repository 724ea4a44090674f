import itertools
from collections import Counter, OrderedDict, defaultdict, deque
from dataclasses import asdict, dataclass, field
from enum import Enum
from functools import lru_cache, reduce
from typing import List

class Level(Enum):
    LOW = 1
    HIGH = 2

@dataclass
class Ticket:
    title: str
    level: Level
    tags: List[str] = field(default_factory=list)

@lru_cache(maxsize=None)
def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)

def main(words):
    groups = defaultdict(list)
    for w in words:
        groups[w[0]].append(w)
    window = deque(maxlen=2)
    for w in words:
        window.append(w)
    ticket = Ticket("disk full", Level.HIGH, ["ops"])
    return {
        "common": Counter(words).most_common(2),
        "groups": dict(groups),
        "pairs": list(itertools.combinations(sorted(set(words)), 2))[:3],
        "product": reduce(lambda a, b: a * b, range(1, 6)),
        "window": list(window),
        "fib": fib(50),
        "ticket": {**asdict(ticket), "level": ticket.level.name},
        "ordered": list(OrderedDict.fromkeys(words)),
    }
