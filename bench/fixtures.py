"""Generated inputs for the benchmarks: article pages, their search queries, a loopback site.

Everything is deterministic (seeded), so runs compare like with like.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SUBJECT = "fiddle leaf fig"
# What the page covers: (heading, words its paragraphs use).
COVERED = [
    ("How much light it needs", "light bright indirect window sun south east exposure leaves"),
    ("How often to water", "water watering weekly soil dry top inches drainage overwatering"),
    ("Choosing a pot", "pot container drainage holes size terracotta plastic roots"),
    ("The best soil mix", "soil mix bark perlite peat airy draining chunky"),
    ("When to repot", "repot spring roots bound pot size larger transplant"),
    ("Fertilizing", "fertilizer feed nitrogen liquid monthly growing season dilute"),
    ("Pruning and shaping", "prune pruning shape cut branch node notch height"),
    ("Humidity", "humidity humidifier air dry mist tray pebble leaves"),
    ("Temperature", "temperature warm cold draft heater degrees winter"),
    ("Dusting the leaves", "dust leaves wipe cloth shine clean photosynthesis"),
    ("Rotating the plant", "rotate turn lean light even growth quarter"),
    ("Propagating from cuttings", "propagate cutting water roots node stem rooting"),
    ("Growing it taller", "tall height stake support trunk upright growth"),
    ("Making it bushy", "bushy branching notch prune lateral buds fuller"),
    ("Winter care", "winter dormant less water light heater draft"),
    ("Moving it outdoors", "outdoors patio summer acclimate sunburn shade"),
    ("Choosing a healthy plant", "buy nursery healthy leaves roots pests inspect"),
    ("Cleaning up fallen leaves", "fallen leaves drop shock move stress recover"),
    ("Dealing with dropping leaves", "dropping leaves drop shock change stress draft"),
    ("Drooping leaves", "drooping droop thirsty water limp recover"),
    ("Yellow leaves", "yellow leaves overwatering nitrogen old lower"),
    ("Curling leaves", "curling curl dry thirsty heat light"),
    ("New growth", "new growth bud leaf spring flush size"),
    ("Air layering", "air layering moss wrap cut trunk root"),
    ("Toxicity for pets", "toxic pets cats dogs sap irritation"),
]
# What the page leaves out: the gaps the queries should reveal.
UNCOVERED = [
    ("brown spots", "brown spots edges fungal root rot bacterial"),
    ("spider mites", "spider mites webbing pests neem oil insecticidal soap"),
    ("bonsai", "bonsai miniature wire shallow tray"),
    ("variegated", "variegated tineke cream white rare cultivar"),
    ("fruit", "fruit figs edible flowering mature outdoors"),
]
MODIFIERS = [
    "how to",
    "best",
    "why",
    "when to",
    "guide",
    "tips",
    "care",
    "indoor",
    "problems",
    "easy",
    "what",
    "should i",
    "can you",
    "help",
    "fix",
]
FILLER = (
    "the a of and it to in is for with your that this on as are be can more when from but or if "
    "most will keep plant plants fig ficus lyrata indoor home room"
).split()


def _paragraph(rng: random.Random, words: list[str], length: int) -> str:
    pool = words * 3 + FILLER
    text = " ".join(rng.choice(pool) for _ in range(length))
    return text[0].upper() + text[1:] + "."


def article_html(
    seed: int = 0,
    *,
    sections: int = 25,
    paragraphs: int = 2,
    words: int = 45,
    title: str = "Caring for a Fiddle Leaf Fig",
) -> str:
    """An article page: site furniture around `sections` headed sections of `paragraphs` paragraphs each.

    With the defaults, about 50 segments of main content once extracted.
    """
    rng = random.Random(seed)
    body = []
    for i in range(sections):
        heading, vocabulary = COVERED[i % len(COVERED)]
        if i >= len(COVERED):
            heading = f"{heading} ({i // len(COVERED) + 1})"
        body.append(f"<h2>{heading}</h2>")
        for _ in range(paragraphs):
            body.append(f"<p>{_paragraph(rng, vocabulary.split(), words)}</p>")
    nav = "".join(f'<li><a href="/c/{i}">Category {i}</a></li>' for i in range(12))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{title} | Green Sill</title>"
        f'<meta name="description" content="How to care for a {SUBJECT} indoors."></head><body>'
        f"<header><nav><ul>{nav}</ul></nav></header>"
        f"<main><article><h1>{title}</h1>{''.join(body)}</article></main>"
        '<aside class="sidebar"><p>Subscribe to our newsletter for weekly plant tips.</p></aside>'
        "<footer><p>Copyright Green Sill. All rights reserved.</p></footer></body></html>"
    )


def sized_article_html(target_bytes: int, seed: int = 0) -> str:
    """An article of about target_bytes: more sections and longer paragraphs as it grows."""
    per_section = len(article_html(seed, sections=1, paragraphs=4, words=60)) - len(article_html(seed, sections=0))
    sections = max(1, round((target_bytes - len(article_html(seed, sections=0))) / per_section))
    return article_html(seed, sections=sections, paragraphs=4, words=60)


def keyword_rows(count: int = 300, seed: int = 0) -> list[dict]:
    """Search Console rows for the article: most about what it covers, some about what it lacks."""
    rng = random.Random(seed)
    topics = [(h.lower(), v.split(), True) for h, v in COVERED] + [(h, v.split(), False) for h, v in UNCOVERED]
    rows: dict[str, dict] = {}
    while len(rows) < count:
        heading, vocabulary, covered = topics[rng.randrange(len(topics))]
        words = rng.sample(vocabulary, k=min(len(vocabulary), rng.randint(1, 3)))
        query = " ".join([rng.choice(MODIFIERS), SUBJECT, *words])
        if query in rows:
            continue
        impressions = rng.randint(20, 5000) * (3 if not covered else 1)
        position = round(rng.uniform(1.5, 30.0), 2)
        clicks = round(impressions * rng.uniform(0.001, 0.08))
        rows[query] = {
            "query": query,
            "clicks": clicks,
            "impressions": impressions,
            "ctr": round(clicks / impressions, 4),
            "position": position,
        }
    return list(rows.values())


# The token counts (all-MiniLM-L6-v2's tokenizer, [CLS] and [SEP] included, cut at 256) of 200
# segments as pageperfect.analysis.segment extracts them from the labelled pages in shared/eval (the
# 636 segments of its 3 written and 8 real pages, at 200 evenly spaced quantiles): the passage
# lengths the offline embedding benchmark generates. Mean 55, median 40, 2% at the 256 cut.
SEGMENT_TOKEN_LENGTHS = (
    3,
    3,
    4,
    4,
    5,
    5,
    5,
    5,
    6,
    6,
    6,
    6,
    6,
    7,
    7,
    8,
    8,
    8,
    8,
    9,
    9,
    9,
    9,
    9,
    10,
    10,
    10,
    11,
    11,
    11,
    11,
    11,
    11,
    11,
    11,
    12,
    12,
    12,
    12,
    12,
    12,
    13,
    13,
    13,
    13,
    13,
    14,
    15,
    15,
    15,
    16,
    16,
    16,
    17,
    17,
    18,
    18,
    18,
    19,
    19,
    19,
    20,
    20,
    20,
    21,
    21,
    21,
    22,
    22,
    23,
    24,
    24,
    24,
    25,
    25,
    25,
    25,
    26,
    27,
    28,
    28,
    29,
    30,
    30,
    30,
    31,
    31,
    32,
    33,
    34,
    34,
    35,
    35,
    36,
    37,
    37,
    38,
    39,
    39,
    40,
    41,
    42,
    43,
    43,
    44,
    45,
    45,
    46,
    47,
    47,
    48,
    48,
    49,
    49,
    49,
    50,
    51,
    52,
    53,
    54,
    55,
    56,
    56,
    57,
    57,
    57,
    58,
    59,
    60,
    60,
    61,
    62,
    63,
    64,
    65,
    66,
    67,
    68,
    69,
    69,
    70,
    72,
    74,
    75,
    76,
    77,
    78,
    79,
    80,
    81,
    81,
    82,
    83,
    83,
    84,
    84,
    85,
    86,
    87,
    87,
    89,
    90,
    91,
    91,
    91,
    94,
    96,
    96,
    99,
    99,
    100,
    101,
    101,
    104,
    106,
    107,
    109,
    117,
    119,
    120,
    122,
    124,
    126,
    128,
    129,
    131,
    137,
    139,
    147,
    149,
    157,
    164,
    166,
    174,
    196,
    217,
    252,
    256,
    256,
    256,
)
SUBJECT_NAMES = ["fiddle leaf fig", "ficus lyrata", "fiddle fig", "fig tree", "fiddle leaf fig tree"]


def search_queries(count: int = 1000, seed: int = 0) -> list[str]:
    """Distinct Search Console-like queries of 3 to 10 words: a name of the subject, words of one topic, maybe a modifier."""
    rng = random.Random(seed)
    topics = [v.split() for _, v in COVERED + UNCOVERED]
    queries: dict[str, None] = {}
    while len(queries) < count:
        length = rng.randint(3, 10)
        subject = rng.choice(SUBJECT_NAMES).split()
        modifier = rng.choice(MODIFIERS).split()
        words = rng.sample(rng.choice(topics), k=max(1, min(4, length - len(subject))))
        query = (modifier if len(modifier) + len(subject) + len(words) <= length else []) + subject + words
        while len(query) < length:
            query.append(rng.choice(FILLER))
        queries[" ".join(query[:length])] = None
    return list(queries)


class _SiteHandler(BaseHTTPRequestHandler):
    pages: dict[str, bytes] = {}
    delays: dict[str, float] = {}

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        # Any /<kind>/<name>.html serves the page registered for <kind>: one page, many distinct URLs.
        kind = self.path.strip("/").split("/", 1)[0]
        body = self.pages.get(kind)
        if self.delays.get(kind):
            time.sleep(self.delays[kind])  # a slow site (each request has its own thread)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8" if body is not None else "text/plain")
        body = body if body is not None else b"not found"
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Site:
    """A loopback HTTP server: each registered page kind is served under /<kind>/<anything>.html."""

    server: ThreadingHTTPServer
    handler: type[_SiteHandler]

    @classmethod
    def start(cls) -> "Site":
        handler = type("Handler", (_SiteHandler,), {"pages": {}, "delays": {}})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
        return cls(server, handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, kind: str, html: str, *, delay: float = 0.0) -> None:
        """Serve html for /<kind>/*.html, answering after `delay` seconds."""
        self.handler.pages[kind] = html.encode()
        self.handler.delays[kind] = delay

    def url(self, kind: str, name: str) -> str:
        return f"{self.base_url}/{kind}/{name}.html"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
