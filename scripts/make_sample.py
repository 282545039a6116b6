"""Generate tagdistill's sample dataset: synthetic English news sentences with PER, LOC, ORG, MISC.

Deterministic (fixed seed) and standard library only. Every name list and template below was
written for this project; nothing is taken from a corpus. A third of every name list is held
out of the train split, so dev, test and unlabeled contain entities train never shows.

    python scripts/make_sample.py            # rewrites tagdistill/sample/
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Callable
from pathlib import Path

SEED = 1729
SIZES = {"train": 400, "dev": 100, "test": 100, "unlabeled": 600}
OUT = Path(__file__).resolve().parent.parent / "tagdistill" / "sample"


def _names(text: str) -> list[str]:
    """Items of a "|"-separated list (whitespace around each item dropped)."""
    return [item.strip() for item in text.split("|")]


FIRST = _names(
    "Anna|Marcus|Fatima|Kenji|Olga|Diego|Priya|Samuel|Ingrid|Tomasz|Amara|Luca|Mei|Rafael|Hannah|Yusuf|"
    "Claire|Dmitri|Nadia|Oliver|Sofia|Kwame|Elena|Arjun|Beatriz|Henrik|Leila|Patrick|Chiara|Jonas|Aisha|"
    "Victor|Ruth|Mateo|Sunita|Gareth|Noor|Felix|Ines|Tariq|Margaret|Pablo|Yuki|Stefan|Zanele|Owen|Lucia|"
    "Emeka|Greta|Hamid|Rosa|Daniel|Keiko|Andrei|Isabel|Kofi|Helena|Ravi|Maria|Thomas"
)
LAST = _names(
    "Lindqvist|Okafor|Moreau|Tanaka|Petrov|Alvarez|Sharma|Whitfield|Kowalski|Haddad|Brennan|Castillo|"
    "Nakamura|Schneider|Mensah|Rossi|Chen|Dubois|Oyelaran|Fischer|Novak|Hughes|Ferreira|Takahashi|"
    "Gallagher|Adeyemi|Lindgren|Kaplan|Morales|Varga|Ibrahim|Pellegrini|Andersen|Kimura|Osei|Harrington|"
    "Volkov|Mendes|Bianchi|Ramirez|Nyberg|Costa|Achterberg|Delacroix|Mwangi|Hoffmann|Quinn|Salazar|Yilmaz|"
    "Kovacs|Fontaine|Grant|Jovanovic|Karlsson|Navarro|O'Brien|Park|Reyes|Sokolov|Tembo|Umeh|Valdez|Weber|"
    "Zhang|Eriksen|Barros|McAllister|Van Dijk"
)
CITY = _names(
    "London|Paris|Nairobi|Lagos|Lima|Osaka|Hamburg|Rotterdam|Montreal|Melbourne|Cairo|Istanbul|Mumbai|"
    "Jakarta|Santiago|Oslo|Warsaw|Lisbon|Dublin|Manila|Hanoi|Accra|Quito|Tunis|Casablanca|Geneva|Vienna|"
    "Prague|Budapest|Seoul|Auckland|Cape Town|Buenos Aires|New Delhi|Kuala Lumpur|Rio de Janeiro|"
    "Hong Kong|Malmö|Bogotá|Kraków|Marseille|Glasgow|Dakar|Karachi|Chennai|Perth|Vancouver|Lyon|Porto|"
    "Gdansk|Mombasa|Kyoto"
)
COUNTRY = _names(
    "France|Germany|Kenya|Brazil|Japan|Canada|Nigeria|Italy|Spain|Poland|India|Chile|Norway|Egypt|Turkey|"
    "Australia|Mexico|Sweden|the Netherlands|Ghana|South Korea|Argentina|Ireland|Portugal|Vietnam|Peru|"
    "Austria|Denmark|Morocco|the Philippines|Thailand|Hungary|Greece|Scotland|Senegal|Colombia|"
    "New Zealand|Indonesia|Tanzania|Finland"
)
REGION = _names(
    "Siberia|Patagonia|Bavaria|Catalonia|Tuscany|Punjab|Ontario|Queensland|Andalusia|Scandinavia|"
    "the Rift Valley|the Sahel|the Balkans|the Andes|Sumatra|Mindanao|the Alps|Normandy|Kashmir|the Amazon|"
    "Lapland|the Highlands"
)
NAT = _names(
    "French|German|Kenyan|Brazilian|Japanese|Canadian|Nigerian|Italian|Spanish|Polish|Indian|Chilean|"
    "Norwegian|Egyptian|Turkish|Australian|Mexican|Swedish|Dutch|Ghanaian|Korean|Argentine|Irish|"
    "Portuguese|Vietnamese|Peruvian|Austrian|Danish|Moroccan|Filipino|Thai|Hungarian|Greek|Scottish"
)
LANG = _names("English|French|Swahili|Mandarin|Arabic|Portuguese|Hindi|Spanish|Japanese|Yoruba|Turkish")
EVENT = _names(
    "World Cup|Olympic Games|Winter Olympics|Tour de France|Champions League|Africa Cup of Nations|"
    "Davis Cup|Asian Games|Commonwealth Games|Copa America|Six Nations|Europa League|Pan American Games|"
    "Rugby World Cup"
)
CITY_EVENT = _names("Marathon|Open|Film Festival|Book Fair|Motor Show|Jazz Festival|Grand Prix")
STEM = _names(
    "Northgate|Bluestone|Redfield|Silverline|Harbourview|Greenhill|Eastbrook|Westmark|Ironwood|Clearwater|"
    "Goldcrest|Summit|Pinecrest|Meridian|Kestrel|Falcon|Atlas|Orion|Vantage|Lumen|Corvane|Tidewell|"
    "Brightwater|Halvorsen|Okonjo|Marlow|Stonebridge|Azura|Novatek|Quadrant|Riverton|Helix|Solent|"
    "Arkwright|Bellhaven|Cobalt|Drayton|Everfield|Foxley|Granite"
)
INDUSTRY = _names(
    "Bank|Motors|Energy|Pharmaceuticals|Shipping|Telecom|Foods|Mining|Insurance|Media|Steel|Logistics|"
    "Capital|Airlines|Chemicals|Software|Textiles|Brewing|Construction|Retail"
)
SUFFIX = ["", "", "", "Group", "Holdings", "Corp.", "Inc.", "Ltd.", "International", "Partners"]
MINISTRY = _names("Finance|Defence|Health|Education|Agriculture|Energy|Transport|Justice|Trade|Interior")
CLUB_END = _names("United|Rovers|Athletic|Wanderers|City|Albion|Rangers|FC")
PARTY = _names(
    "National Unity Party|Democratic Front|Green Alliance|People 's Progressive Party|Liberal Union|"
    "Social Democratic Party|Rural League|Reform Movement|Labour Party|Christian Democratic Union|"
    "Popular Renewal Party|Workers Unity Party"
)
PAPER_END = _names("Herald|Times|Gazette|Post|Tribune|Chronicle|Observer|Courier")
MONTH = _names("January|February|March|April|May|June|July|August|September|October|November|December")
DAY = _names("Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday")
NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", "%", ")", "'s", "n't", "'re", "'ve", "'ll", "'d", "'m"}
NO_SPACE_AFTER = {"(", "$"}

# "{SLOT}" is filled from SLOTS; a template starting with "!" is a headline, written in capitals.
TEMPLATES = [
    "{ORG} said on {DAY} it would cut {BIG} jobs at its plant near {CITY} .",
    "Shares in {ORG} rose {PCT} percent to {MONEY} after the company raised its profit forecast .",
    "{ORG} agreed to buy {NAT} rival {ORG} for {MONEY} , the companies said in a statement .",
    "{PER} , chief executive of {ORG} , told reporters in {CITY} that demand remained strong .",
    "The {BANK} left interest rates unchanged at {PCT} percent on {DAY} .",
    "Analysts at {ORG} expect {COUNTRY} 's economy to grow {PCT} percent this year .",
    "{ORG} shares fell sharply in {CITY} on {DAY} after the company warned on profits .",
    "{NAT} Prime Minister {PER} arrived in {CITY} on {DAY} for talks with {NAT} officials .",
    "{PER} won {PCT} percent of the vote in the presidential election in {COUNTRY} , results showed .",
    "The {PARTY} called for early elections after {PER} resigned as finance minister .",
    "Foreign ministers from {COUNTRY} and {COUNTRY} will meet in {CITY} next week to discuss the dispute .",
    '" We will not accept these terms , " {PER} told the {MINISTRY} in {CITY} .',
    '{PER} , a spokesman for the {MINISTRY} , said the talks had been " constructive " .',
    "Thousands of people marched through {CITY} on {DAY} to protest against the new law .",
    "The {AGENCY} said it had sent {NUM} tonnes of food aid to flood-hit areas of {REGION} .",
    "{PER} scored twice as {CLUB} beat {CLUB} {SCORE} on {DAY} .",
    "{NAT} striker {PER} has signed a three-year contract with {CLUB} .",
    "{PER} of {COUNTRY} won the men 's 200 metres at the {GAMES} in a time of {SECONDS} seconds .",
    "{CLUB} manager {PER} said he was disappointed with the draw against {CLUB} .",
    "{COUNTRY} will host the {EVENT} for the first time in {YEAR} .",
    "{PER} ( {COUNTRY} ) {SECONDS}",
    "{PER} , who finished second at the {EVENT} last year , withdrew with a knee injury .",
    "!SOCCER - {CLUB} BEAT {CLUB} {SCORE} .",
    "!{NAT} {SPORT} CHAMPION {LAST} RETIRES .",
    "Police in {CITY} arrested {NUM} people on {DAY} after clashes outside the offices of {ORG} .",
    "A court in {CITY} sentenced {PER} to {SMALL} years in prison for fraud .",
    "{PER} , {AGE} , was found guilty of stealing paintings from the {MUSEUM} .",
    "An earthquake measuring {MAGNITUDE} struck {REGION} early on {DAY} , the {AGENCY} said .",
    "Heavy rain caused flooding in {CITY} and parts of {REGION} , forcing {BIG} people from their homes .",
    "Researchers at {UNIVERSITY} said they had found a new species of frog in {REGION} .",
    "The film , directed by {PER} , won the top prize at the {CITYEVENT} on {DAY} .",
    "{PER} 's new novel , set in {CITY} , has been translated into {LANG} .",
    "{AIRLINE} will start direct flights between {CITY} and {CITY} in {MONTH} .",
    "{PER} said the {NAT} team would travel to {CITY} on {DAY} .",
    "{COUNTRY} 's {STATS} said inflation rose to {PCT} percent in {MONTH} .",
    "Prices rose {PCT} percent in {MONTH} , the highest rate in {SMALL} years .",
    "The talks ended without agreement on {DAY} , diplomats said .",
    "{PER} did n't say when the {NAT} embassy in {CITY} would reopen .",
    "{ORG} , {ORG} and {ORG} are among the bidders , according to people familiar with the matter .",
    "{PER} met {PER} in {CITY} , their first meeting since {YEAR} .",
    "The {CITYEVENT} opens on {DAY} with more than {BIG} visitors expected .",
    "{NAT} and {NAT} troops took part in joint exercises near {CITY} .",
    "{ORG} 's new factory in {COUNTRY} will employ about {BIG} workers .",
    "Mr. {LAST} , who has led {ORG} since {YEAR} , will retire at the end of the year .",
    "{CITYUP} {DATE}",
    "Dr. {PER} of {UNIVERSITY} warned that the virus could spread to {COUNTRY} .",
    "{PER} and {PER} will lead the {NAT} delegation at the talks in {CITY} .",
    "The {PAPER} reported on {DAY} that {ORG} planned to close its office in {CITY} .",
    "{COUNTRY} beat {COUNTRY} {SCORE} in a {EVENT} qualifier in {CITY} on {DAY} .",
    "The {NAT} government has asked {ORG} to review its plans for {REGION} .",
    "{PER} , a former {NAT} international , was appointed coach of {CLUB} on {DAY} .",
    "Speaking in {CITY} , {PER} said the {EVENT} would go ahead as planned .",
    "The {MINISTRY} said {NUM} {NAT} tourists had been evacuated from {REGION} .",
    "{PER} told the {PAPER} that she would stand for the {PARTY} in {CITY} .",
    "{LAST} 's lawyer said his client would appeal against the ruling .",
    "Exports from {COUNTRY} to {COUNTRY} fell {PCT} percent in {MONTH} , the {STATS} said .",
    "Tickets for the {CITYEVENT} sold out within hours , organisers said .",
    "{UNIVERSITY} will open a campus in {CITY} next year , {PER} said .",
    "Oil prices rose on {DAY} as traders worried about supplies from {REGION} .",
    "It was n't clear whether {PER} would attend the summit in {CITY} .",
]


def _held_out_split(items: list[str], train: bool) -> list[str]:
    # Every third item is kept out of train, so dev/test/unlabeled have names train never shows.
    return [x for i, x in enumerate(items) if i % 3 != 0] if train else items


Tagged = list[tuple[str, str]]  # (token, IOB2 tag)


def _slots(rng: random.Random, train: bool) -> dict[str, Callable[[], Tagged]]:
    """Slot name -> a function returning its tagged tokens."""

    def pick(items: list[str]) -> str:
        return rng.choice(_held_out_split(items, train))

    def entity(kind: str, make: Callable[[], str]) -> Callable[[], Tagged]:
        def fill() -> Tagged:
            text = make()
            article = [("the", "O")] if text.startswith("the ") else []  # "the Alps": the article is O
            tokens = text.removeprefix("the ").split()
            return article + [(t, f"{'B' if i == 0 else 'I'}-{kind}") for i, t in enumerate(tokens)]

        return fill

    def plain(make: Callable[[], str]) -> Callable[[], Tagged]:
        return lambda: [(t, "O") for t in make().split()]

    def person() -> str:
        first, last = pick(FIRST), pick(LAST)
        if rng.random() < 0.1:
            return f"{first} {rng.choice('ABCDEFGHJKLMPRSTW')}. {last}"
        return f"{first} {last}"

    def company() -> str:
        return " ".join(x for x in (pick(STEM), rng.choice(INDUSTRY), rng.choice(SUFFIX)) if x)

    def org() -> str:
        return company() if rng.random() < 0.8 else f"{pick(LAST)} & {pick(LAST)}"

    def university() -> str:
        return rng.choice(
            [f"the University of {pick(CITY)}", f"{pick(CITY)} University", f"the {pick(STEM)} Institute"]
        )

    def club() -> str:
        return rng.choice(
            [f"{pick(CITY)} {rng.choice(CLUB_END)}", f"Real {pick(CITY)}", f"Sporting {pick(CITY)}"]
        )

    def score() -> str:
        winner = rng.randint(1, 5)
        return f"{winner}-{rng.randint(0, winner - 1)}"

    def money() -> str:
        amount, unit = rng.randint(2, 900), rng.choice(["$", "euros", "pounds"])
        return f"$ {amount} million" if unit == "$" else f"{amount} million {unit}"

    return {
        "PER": entity("PER", person),
        "LAST": entity("PER", lambda: pick(LAST)),
        "CITY": entity("LOC", lambda: pick(CITY)),
        "CITYUP": entity("LOC", lambda: pick(CITY).upper()),
        "COUNTRY": entity("LOC", lambda: pick(COUNTRY)),
        "REGION": entity("LOC", lambda: pick(REGION)),
        "NAT": entity("MISC", lambda: pick(NAT)),
        "LANG": entity("MISC", lambda: pick(LANG)),
        "EVENT": entity("MISC", lambda: pick(EVENT)),
        "GAMES": entity("MISC", lambda: pick([e for e in EVENT if e.endswith("Games")])),
        "CITYEVENT": entity("MISC", lambda: f"{pick(CITY)} {rng.choice(CITY_EVENT)}"),
        "ORG": entity("ORG", org),
        "BANK": entity(
            "ORG", lambda: rng.choice([f"Central Bank of {pick(COUNTRY)}", f"{pick(NAT)} Central Bank"])
        ),
        "MINISTRY": entity(
            "ORG", lambda: rng.choice([f"Ministry of {pick(MINISTRY)}", f"{pick(MINISTRY)} Ministry"])
        ),
        "AGENCY": entity(
            "ORG", lambda: rng.choice(["United Nations", "Red Cross", f"{pick(STEM)} Foundation"])
        ),
        "MUSEUM": entity(
            "ORG", lambda: rng.choice([f"{pick(CITY)} Museum of Art", f"National Gallery of {pick(COUNTRY)}"])
        ),
        "UNIVERSITY": entity("ORG", university),
        "CLUB": entity("ORG", club),
        "PARTY": entity("ORG", lambda: pick(PARTY)),
        "PAPER": entity("ORG", lambda: f"{pick(CITY)} {rng.choice(PAPER_END)}"),
        "AIRLINE": entity("ORG", lambda: f"{pick(STEM)} {rng.choice(['Airways', 'Air', 'Airlines'])}"),
        "STATS": entity(
            "ORG", lambda: rng.choice(["National Statistics Office", "Office for National Statistics"])
        ),
        "DAY": plain(lambda: rng.choice(DAY)),
        "MONTH": plain(lambda: rng.choice(MONTH)),
        "YEAR": plain(lambda: str(rng.randint(1985, 2024))),
        "DATE": plain(lambda: f"{rng.randint(1995, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"),
        "NUM": plain(lambda: str(rng.randint(12, 950))),
        "BIG": plain(lambda: f"{rng.randint(1, 9)},{rng.randint(0, 999):03d}"),
        "SMALL": plain(lambda: str(rng.randint(2, 15))),
        "AGE": plain(lambda: str(rng.randint(19, 78))),
        "PCT": plain(lambda: f"{rng.randint(0, 12)}.{rng.randint(1, 9)}"),
        "SCORE": plain(score),  # the winner's score first
        "SECONDS": plain(lambda: f"{rng.randint(19, 21)}.{rng.randint(10, 99)}"),
        "MAGNITUDE": plain(lambda: f"{rng.randint(4, 7)}.{rng.randint(0, 9)}"),
        "SPORT": plain(lambda: rng.choice(["TENNIS", "CHESS", "SKI", "BOXING", "CYCLING"])),
        "MONEY": plain(money),
    }


def sentence(template: str, slots: dict[str, Callable[[], Tagged]]) -> Tagged:
    """Fill a template with tagged tokens."""
    headline = template.startswith("!")
    out: Tagged = []
    for part in template.removeprefix("!").split():
        if part == "." and out and out[-1][0].endswith("."):
            continue  # "Acme Corp." ends the sentence without a second period
        out += slots[part[1:-1]]() if part.startswith("{") else [(part, "O")]
    if headline:
        return [(token.upper(), tag) for token, tag in out]
    first, tag = out[0]
    return [(first[0].upper() + first[1:], tag), *out[1:]]


def render(tokens: list[str]) -> str:
    """The raw text the tokens came from: no space before closing punctuation and clitics."""
    text = ""
    quote_open = False
    glue = True  # no space before the next token
    for token in tokens:
        closing = token in NO_SPACE_BEFORE or (token == '"' and quote_open)
        text += token if glue or closing else f" {token}"
        glue = token in NO_SPACE_AFTER or (token == '"' and not quote_open)
        if token == '"':
            quote_open = not quote_open
    return text


def generate(seed: int) -> dict[str, list[Tagged]]:
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    splits: dict[str, list[Tagged]] = {}
    for split, size in SIZES.items():
        slots = _slots(rng, train=split == "train")
        sentences: list[Tagged] = []
        while len(sentences) < size:
            s = sentence(rng.choice(TEMPLATES), slots)
            key = tuple(token for token, _ in s)
            if key not in seen:
                seen.add(key)
                sentences.append(s)
        splits[split] = sentences
    return splits


def _entities(s: Tagged) -> list[str]:
    found: list[str] = []
    for token, tag in s:
        if tag.startswith("B-"):
            found.append(f"{tag[2:]}:{token}")
        elif tag.startswith("I-"):
            found[-1] += f" {token}"
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="output folder (default: tagdistill/sample)")
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    splits = generate(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    for split in ("train", "dev", "test"):
        blocks = ["".join(f"{token} {tag}\n" for token, tag in s) for s in splits[split]]
        (args.out / f"{split}.conll").write_text("\n".join(blocks), encoding="utf-8")
    lines = [render([token for token, _ in s]) for s in splits["unlabeled"]]
    (args.out / "unlabeled.txt").write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    train_entities = {e for s in splits["train"] for e in _entities(s)}
    test_entities = [e for s in splits["test"] for e in _entities(s)]
    unseen = sum(e not in train_entities for e in test_entities) / len(test_entities)
    print(
        f"wrote {args.out}: {', '.join(f'{k} {len(v)}' for k, v in splits.items())} sentences; "
        f"{unseen:.0%} of test entities do not occur in train"
    )


if __name__ == "__main__":
    main()
