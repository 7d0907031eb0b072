"""A coffee site of seven pages made for the site analysis, with its cases known.

- `cold-brew-guide` and `cold-brew-recipe` split the impressions of one intent ("how to make cold
  brew at home") and answer it with the same passage: the one cannibalization case.
- `french-press` has a gap ("french press grind size") that `grind-size` answers in a section of
  its own, for queries grind-size does not earn: the one link.
- `espresso-cleaning` and `espresso-reviews` share the words "espresso machine" but not an intent:
  no case between them.
- `decaf` owns its intent alone: no case, no link.
- `moka-pot` answers its own queries: nothing.

`write_site(site)` adds the pages to a tests.helpers.site.Site; `page_query_csv(base)` is the
page-and-query export for them.
"""

from __future__ import annotations

import html

PAGES: dict[str, dict] = {
    "cold-brew-guide": {
        "title": "The Complete Cold Brew Coffee Guide",
        "sections": [
            (
                "How to make cold brew at home",
                "To make cold brew at home, mix coarsely ground coffee with cold water in a jar, stir, cover it and "
                "leave it in the fridge for 12 to 18 hours. Strain it through a paper filter and dilute the "
                "concentrate with water or milk.",
            ),
            (
                "Cold brew coffee to water ratio",
                "Use one part coffee to eight parts water for a ready-to-drink cold brew, or one to four for a "
                "concentrate. Weigh both: 100 grams of coffee to 800 grams of water.",
            ),
            (
                "How long to steep cold brew",
                "Steep cold brew for 12 hours for a light cup and up to 24 hours for a strong one. Past a day the "
                "coffee turns woody and bitter.",
            ),
            (
                "Why cold brew tastes less acidic",
                "Cold water extracts fewer of the acids that hot water pulls from the grounds, so cold brew tastes "
                "smoother and less sour than iced coffee brewed hot.",
            ),
        ],
        "queries": [
            ("how to make cold brew at home", 60, 1300, 4.1),
            ("how to make cold brew coffee at home", 40, 900, 4.5),
            ("cold brew ratio", 90, 1500, 3.2),
            ("cold brew coffee to water ratio", 40, 700, 3.6),
            ("how long to steep cold brew", 70, 1100, 2.9),
            ("cold brew steep time", 30, 500, 3.4),
            ("is cold brew less acidic", 20, 400, 5.1),
            ("why is cold brew less acidic", 10, 250, 5.6),
        ],
    },
    "cold-brew-recipe": {
        "title": "Easy Cold Brew Recipe",
        "sections": [
            (
                "How to make cold brew at home",
                "To make cold brew at home, combine coarsely ground coffee and cold water in a large jar, stir and "
                "cover. Leave it in the fridge for 12 to 18 hours, then strain it through a paper filter and "
                "dilute the concentrate with water or milk.",
            ),
            (
                "Serving cold brew with milk and syrup",
                "Pour the cold brew over ice, add a splash of oat milk or whole milk and sweeten it with simple "
                "syrup or maple syrup to taste.",
            ),
            (
                "Cold brew tonic",
                "For a cold brew tonic, fill a glass with ice and tonic water and float a shot of cold brew "
                "concentrate on top with a slice of orange.",
            ),
        ],
        "queries": [
            ("how to make cold brew at home", 45, 1100, 5.2),
            ("easy cold brew recipe at home", 35, 800, 5.0),
            ("cold brew with milk and syrup", 15, 300, 6.3),
            ("how to sweeten cold brew", 10, 260, 7.1),
            ("cold brew tonic recipe", 12, 240, 4.4),
            ("coffee tonic with orange", 5, 120, 6.8),
        ],
    },
    "french-press": {
        "title": "How to Use a French Press",
        "sections": [
            (
                "French press coffee ratio",
                "Use 30 grams of coffee for 500 millilitres of water in a French press, about one to sixteen. "
                "For a stronger cup use one to twelve.",
            ),
            (
                "How long to brew French press coffee",
                "Let the coffee steep for four minutes, then press the plunger down slowly and pour straight away "
                "so the coffee does not keep extracting.",
            ),
            (
                "How to clean a French press",
                "Scoop out the grounds, rinse the carafe, take the mesh filter apart once a week and wash it in "
                "warm soapy water.",
            ),
        ],
        "queries": [
            ("french press ratio", 80, 1400, 3.1),
            ("french press coffee ratio grams", 30, 600, 3.5),
            ("how long to brew french press", 60, 1000, 2.8),
            ("french press brew time", 30, 500, 3.3),
            ("how to clean a french press", 25, 450, 4.2),
            ("french press grind size", 20, 1600, 9.4),
            ("what grind for french press", 15, 900, 10.2),
            ("how coarse should french press coffee be ground", 5, 400, 11.8),
        ],
    },
    "grind-size": {
        "title": "Coffee Grind Size Chart",
        "sections": [
            (
                "Coffee grind size chart",
                "Grind size runs from extra coarse to extra fine. The finer the grind, the faster water extracts "
                "the coffee, so each brewing method needs its own setting.",
            ),
            (
                "Grind size for a French press",
                "A French press needs a coarse grind, like sea salt or breadcrumbs. Coarse grounds steep for four "
                "minutes without turning bitter and do not slip through the mesh filter.",
            ),
            (
                "Espresso grind size",
                "Espresso needs a fine grind, close to powdered sugar, so that the water pushed through at nine "
                "bars extracts the shot in 25 to 30 seconds.",
            ),
            (
                "Burr grinder or blade grinder",
                "A burr grinder crushes beans to an even size; a blade grinder chops them into dust and chunks, "
                "which brew unevenly.",
            ),
        ],
        "queries": [
            ("coffee grind size chart", 90, 2000, 3.0),
            ("grind size chart", 40, 900, 3.8),
            ("espresso grind size", 50, 1200, 4.0),
            ("how fine to grind for espresso", 25, 500, 4.6),
            ("burr grinder vs blade grinder", 45, 1000, 3.5),
            ("is a burr grinder better than a blade grinder", 15, 400, 4.3),
        ],
    },
    "espresso-cleaning": {
        "title": "How to Clean and Descale an Espresso Machine",
        "sections": [
            (
                "How to descale an espresso machine",
                "Mix a descaling solution with water, run it through the boiler and the steam wand, leave it for "
                "twenty minutes, then flush the machine twice with clean water.",
            ),
            (
                "How to backflush an espresso machine",
                "Put a blind basket in the portafilter, add a spoon of cleaning powder and run the pump in ten "
                "second bursts until the water runs clear.",
            ),
            (
                "Cleaning the steam wand",
                "Purge the steam wand and wipe it with a damp cloth after every drink so milk does not bake onto "
                "the tip.",
            ),
        ],
        "queries": [
            ("how to descale an espresso machine", 70, 1300, 3.3),
            ("descale espresso machine with citric acid", 20, 400, 5.0),
            ("how to backflush an espresso machine", 40, 700, 3.1),
            ("espresso machine backflush how often", 15, 300, 4.4),
            ("how to clean a steam wand", 25, 500, 3.9),
        ],
    },
    "espresso-reviews": {
        "title": "The Best Espresso Machines for Home",
        "sections": [
            (
                "Best espresso machine under 500 dollars",
                "Our pick under 500 dollars is a single boiler machine with a PID controller and a commercial "
                "sized portafilter; it pulls shots as steady as machines that cost twice as much.",
            ),
            (
                "Best espresso machine for beginners",
                "For a beginner we suggest a machine with a built-in grinder and pressurised baskets that forgive "
                "an uneven tamp.",
            ),
            (
                "Single boiler or dual boiler espresso machine",
                "A dual boiler espresso machine steams milk while it pulls a shot; a single boiler has to wait for "
                "the temperature to change between the two.",
            ),
        ],
        "queries": [
            ("best espresso machine under 500", 80, 1800, 4.2),
            ("espresso machine under 500 dollars", 30, 700, 5.1),
            ("best espresso machine for beginners", 60, 1400, 4.0),
            ("beginner espresso machine", 25, 600, 4.9),
            ("single boiler vs dual boiler espresso machine", 30, 650, 3.7),
        ],
    },
    "decaf": {
        "title": "Is Decaf Coffee Caffeine Free?",
        "sections": [
            (
                "How much caffeine is in decaf coffee",
                "A cup of decaf coffee still has 2 to 15 milligrams of caffeine, against about 95 milligrams in a "
                "regular cup. Decaffeination removes about 97 percent of it.",
            ),
            (
                "How coffee is decaffeinated",
                "Green beans are soaked in water, then the caffeine is taken out with a solvent, with carbon "
                "dioxide, or with the Swiss Water process that uses only water and charcoal filters.",
            ),
        ],
        "queries": [
            ("how much caffeine is in decaf coffee", 110, 2400, 2.4),
            ("does decaf have caffeine", 70, 1500, 2.8),
            ("how is coffee decaffeinated", 40, 800, 3.5),
            ("swiss water process decaf", 20, 400, 4.1),
        ],
    },
    "moka-pot": {
        "title": "How to Use a Moka Pot",
        "sections": [
            (
                "How to use a moka pot",
                "Fill the bottom chamber with hot water up to the valve, fill the basket with fine ground coffee "
                "without tamping, screw the pot together and heat it on a medium flame until it gurgles.",
            ),
            (
                "Why does my moka pot coffee taste burnt",
                "Moka pot coffee tastes burnt when the flame is too high or the pot stays on the heat after it "
                "gurgles; take it off as soon as the coffee turns pale.",
            ),
        ],
        "queries": [
            ("how to use a moka pot", 90, 1700, 2.7),
            ("moka pot instructions", 40, 800, 3.4),
            ("moka pot coffee tastes burnt", 20, 450, 4.6),
            ("why does my moka pot taste bitter", 10, 300, 5.3),
        ],
    },
}

# What the site analysis must find, and nothing else.
CANNIBALIZED = {"cold-brew-guide", "cold-brew-recipe"}
LINK = ("french-press", "grind-size", "Grind size for a French press")
SHARED_WORDS = {"espresso-cleaning", "espresso-reviews"}
ALONE = "decaf"


def path_of(name: str) -> str:
    return f"/coffee/{name}.html"


def render(name: str) -> str:
    spec = PAGES[name]
    body = "".join(f"<h2>{html.escape(h)}</h2>\n<p>{html.escape(p)}</p>\n" for h, p in spec["sections"])
    title = html.escape(spec["title"])
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title} | Bean Notes</title>'
        f'<meta name="description" content="{title}"></head><body><main><article><h1>{title}</h1>\n'
        f"{body}</article></main></body></html>"
    )


def write_site(site) -> dict[str, str]:
    """The pages added to a tests.helpers.site.Site; their URLs by name."""
    return {name: site.add(path_of(name), render(name)) for name in PAGES}


def page_query_csv(base_url: str, names: list[str] | None = None) -> str:
    lines = ["page,query,clicks,impressions,ctr,position"]
    for name in names or list(PAGES):
        for query, clicks, impressions, position in PAGES[name]["queries"]:
            lines.append(
                f"{base_url}{path_of(name)},{query},{clicks},{impressions},{clicks / impressions:.4f},{position}"
            )
    return "\n".join(lines) + "\n"


async def analyze_offline(embedder, base_url: str = "https://bean-notes.example") -> list:
    """Every page analysed in this process the way the stage activities do it (segments, intents, evidence),
    as the site analysis' SitePages."""
    from pageperfect.analysis.clustering import summarize_members
    from pageperfect.analysis.coverage import Evidence, passages_of
    from pageperfect.analysis.defaults import defaults_for
    from pageperfect.analysis.gaps import analyze_evidence
    from pageperfect.analysis.intents import group_queries, strip_subject, subject_stems
    from pageperfect.analysis.segment import extract_page, segment_text_for_embedding
    from pageperfect.analysis.site import site_page
    from pageperfect.models import KeywordRow

    defaults = defaults_for(embedder.name)
    model = defaults.coverage
    out = []
    for name, spec in PAGES.items():
        url = base_url + path_of(name)
        segments = extract_page(render(name), url).segments
        rows = [KeywordRow(query=q, clicks=c, impressions=i, ctr=c / i, position=p) for q, c, i, p in spec["queries"]]
        texts = [r.query for r in rows]
        subject = subject_stems(texts)
        stripped_texts = [strip_subject(q, subject) for q in texts]
        passages = passages_of(segments, model.passages)
        sentences = [p.embed_text for p in passages if p.kind != "segment"]
        vectors = await embedder.embed(
            texts + stripped_texts + [segment_text_for_embedding(s) for s in segments] + sentences
        )
        n, m = len(texts), len(segments)
        query_vectors, stripped = vectors[:n], vectors[n : 2 * n]
        segment_vector = {s.segment_id: v for s, v in zip(segments, vectors[2 * n : 2 * n + m])}
        sentence_vectors = iter(vectors[2 * n + m :])
        import numpy as np

        passage_vectors = np.stack(
            [segment_vector[p.segment_id] if p.kind == "segment" else next(sentence_vectors) for p in passages]
        )
        clusters = group_queries(
            rows, query_vectors, stripped, subject, method="intents", eps=defaults.eps, min_samples=defaults.min_samples
        )
        evidence = Evidence(texts, query_vectors, stripped, subject, passages, passage_vectors, model)
        report = analyze_evidence(
            clusters,
            np.array([r.impressions for r in rows]),
            evidence,
            summarize=lambda part, rows=rows, qv=query_vectors: summarize_members(rows, qv, part),
        )
        out.append(
            site_page(
                url,
                f"job-{name}",
                rows,
                query_vectors,
                stripped,
                subject,
                report.gaps,
                passages,
                passage_vectors,
                report.coverage_score,
            )
        )
    return out
