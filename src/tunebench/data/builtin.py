"""Builtin tasks: small synthetic versions of SST-2, MRPC, RTE and SQuAD v2, generated from a seed.

No download; used by the demo and the tests. Calibrated so that in the demo's budget (configs/plans/demo.yaml:
about 280 steps of batch 16) a tiny random-init LLaMA (2 layers, hidden 64) learns every task with LoRA and
with full fine-tuning to well above the best constant predictor and below its ceiling, and the seeds differ: each
task has a cue the model learns fast, a part it learns only partly, and examples nothing in the text decides.
  sst2:     one sentiment word (or two of the same polarity) among neutral film words decides the label; in
            15% of the sentences the word follows "not" (label reversed); 10% are mixed reviews (one positive
            and one negative word) whose label is a coin flip.
  mrpc:     sentence 2 restates sentence 1 (time first or passive voice) -> equivalent; or it is an unrelated
            sentence sharing no subject, verb, object or time. The shared subject decides. A paraphrase rewords
            verb and object (a synonym each, independently) 92% of the time, an unrelated sentence 8%: the model
            cannot compare the sentences in this budget, and learns the rewording instead (best accuracy 92%).
  rte:      the premise states 2 facts, each negated ("not") with probability 0.15; the hypothesis restates
            one (entailment), reverses the polarity of one or states a fact about an entity absent from the
            premise (not_entailment). "not" in the hypothesis is a strong cue, not a rule.
  squad_v2: a context of 3-6 facts about distinct entities, each under a different relation (color, food,
            place, ...; 4 values each), so the answer is the one value of the asked relation; the answer is a
            span of the context (one or two words). About 30% of the questions ask about an entity absent
            from the context: unanswerable; half of those under a relation no fact uses, half under one a
            fact uses (only the entity tells them apart).
Text is lowercase words and punctuation separated by single spaces, so whitespace tokenization gives
exact character offsets. VOCABULARY lists every token the text fields can contain (`title` and `id` are
identifiers, never model input).

Measured in the demo (tunebench demo: 4,500 train / 500 validation / 200 test, 1 epoch of batch 16 = 282
steps, LoRA r16 lr 3e-3, full fine-tuning lr 1e-3; test score x100 on seeds 42 / 43 / 44):
                     sst2 acc          mrpc F1           rte acc           squad_v2 F1
  LoRA r16, lr 3e-3  74.5 / 85.0 / 97.5  86.2 / 81.1 / 85.7  77.5 / 74.0 / 77.0  57.6 / 72.7 / 53.4
  full, lr 1e-3      95.0 / 85.0 / 88.0  89.1 / 89.3 / 89.3  74.5 / 79.5 / 75.5  78.7 / 75.7 / 84.0
  best constant      54.5 (majority)     64.0 (always equiv.) 52.0 (majority)     30.0 (always no answer)
(rte and squad_v2 measured with scratch runs of the demo's settings, runner.run_one on 5,000 builtin train /
200 test.) Before this calibration rte gave LoRA 66.0 on every seed (3-fact premises, negation rate 0.2) and
squad_v2 LoRA 48.3 / 43.7 / 53.9 against 41.5 (all values, 40% unanswerable, none adversarial)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Collection, Hashable

from tunebench.data.tasks import get_task
from tunebench.errors import TunebenchError

UNANSWERABLE_RATE = 0.3
# sst2: the share of sentences whose sentiment word follows "not" (the label is the opposite of the word's
# polarity), and of mixed reviews (one positive and one negative word, label a coin flip: nothing in the text
# decides it, so the expected best is about 95 and the seeds split these examples differently).
SST2_NEGATED_SHARE = 0.15
SST2_MIXED_SHARE = 0.10
# mrpc: how often a paraphrase rewords its verb and its object (each a synonym, independently), and how often
# an unrelated sentence 2 uses the synonym. A 2-layer random model does not learn to compare the two sentences
# within the demo's budget (measured: chance with every word shared, and after 3x the steps), so rewording is
# the cue it learns; a pair with one of two words reworded is a tie it cannot resolve (best accuracy 92%).
MRPC_REWORD_PARAPHRASE = 0.92
MRPC_REWORD_UNRELATED = 1 - MRPC_REWORD_PARAPHRASE
# rte: the chance that a premise fact is stated negated ("the cat is not red ."), and so that an entailed
# hypothesis contains "not" and a contradicting one does not: "not" in the hypothesis is a strong cue but not
# a rule.
RTE_NEGATED_PREMISE_FACT = 0.15
# Of the not_entailment hypotheses, the share that reverses a premise fact's polarity (mostly by adding "not",
# a lexical cue a tiny model learns in tens of steps); the rest state a fact about an absent entity, which
# needs comparing hypothesis and premise -- a tiny model learns that more slowly, so it is the part where
# methods can differ.
RTE_NEGATION_SHARE = 2 / 3
# rte: how many facts a premise states (inclusive range). Two: a 3-fact premise left the comparison unlearned
# by LoRA (every seed made the same predictions, 66.0)
RTE_PREMISE_FACTS = (2, 2)
# squad_v2: how many facts a context states (inclusive range); each relation's first SQUAD_VALUES_PER_RELATION
# values only (a random model with frozen embeddings, under LoRA, learns which words answer "what color" far
# faster for 4 colors than for 11); of the unanswerable questions, the share that asks under a relation the
# context does use (only the entity tells them from an answerable one) -- the rest use a relation it does not.
SQUAD_CONTEXT_FACTS = (3, 6)
SQUAD_VALUES_PER_RELATION = 4
SQUAD_ADVERSARIAL_SHARE = 0.5

# ---------------------------------------------------------------- sst2 words

POSITIVE = ("good", "great", "wonderful", "excellent", "brilliant", "charming", "delightful", "lovely",
            "superb", "funny", "moving", "beautiful")
NEGATIVE = ("bad", "awful", "terrible", "boring", "dull", "weak", "poor", "tedious", "clumsy", "ugly",
            "painful", "bland")
FILM_NOUNS = ("movie", "film", "story", "plot", "cast", "script", "ending", "music", "acting", "director",
              "scene", "dialogue", "hero", "villain")
INTENSIFIERS = ("very", "really", "quite", "truly", "so", "rather", "simply", "fairly")
NEUTRAL_ADJECTIVES = ("long", "short", "new", "old", "recent", "french", "silent", "early", "late", "familiar")
SST2_TEMPLATES = (
    "the {n} was {adv} {adj} .",
    "i found the {n} {adj} .",
    "a {adj} {n} .",
    "the {n} is {adj} and the {n2} is {neu} .",
    "it is a {adj} {n} with a {neu} {n2} .",
    "overall , the {n} felt {adj} .",
    "{adj} {n} , {adv} {adj2} {n2} .",
    "this {neu} {n} has {adv} {adj} {n2} .",
)
SST2_NEGATED_TEMPLATES = (
    "the {n} was not {adj} .",
    "i did not find the {n} {adj} .",
    "the {neu} {n} is not {adj} at all .",
)
SST2_MIXED_TEMPLATE = "the {n} is {adj} but the {n2} is {adj2} ."

# ---------------------------------------------------------------- mrpc words

SUBJECTS = ("company", "council", "teacher", "farmer", "doctor", "mayor", "police", "student", "artist",
            "builder", "bank", "family", "team", "club", "judge", "pilot", "nurse", "chef", "writer", "driver")
# (past tense, synonym in past tense); each is also its past participle, for the passive voice
VERBS = (("bought", "purchased"), ("sold", "traded"), ("built", "constructed"), ("closed", "shut"),
         ("fixed", "repaired"), ("visited", "toured"), ("moved", "relocated"), ("found", "discovered"),
         ("painted", "decorated"), ("cleaned", "washed"))
# (object, synonym)
OBJECTS = (("farm", "ranch"), ("house", "home"), ("car", "vehicle"), ("shop", "store"), ("boat", "ship"),
           ("road", "street"), ("office", "workplace"), ("factory", "plant"), ("garden", "yard"),
           ("hotel", "inn"))
TIMES = ("on monday", "on friday", "last week", "last year", "in may", "in june", "yesterday", "today")

# ---------------------------------------------------------------- rte / squad_v2 facts

ENTITIES = ("cat", "dog", "bird", "fox", "horse", "cow", "sheep", "goat", "pig", "duck", "frog", "mouse",
            "rabbit", "bear", "wolf", "lion", "tiger", "owl", "snake", "deer", "monkey", "turtle", "whale", "bee")
PLACES = tuple(f"{size} {place}" for size in ("big", "small")  # two-word answer spans
               for place in ("barn", "forest", "river", "cave", "garden", "field", "lake", "hill", "village", "meadow"))
# relation -> (statement, negated statement, question, values). Value sets are disjoint, so a relation's
# value occurs once per context and its category alone locates the answer.
RELATIONS: dict[str, tuple[str, str, str, tuple[str, ...]]] = {
    "color": ("the {e} is {v} .", "the {e} is not {v} .", "what color is the {e} ?",
              ("red", "blue", "green", "yellow", "black", "white", "brown", "pink", "gray", "orange", "purple")),
    "food": ("the {e} eats {v} .", "the {e} does not eat {v} .", "what does the {e} eat ?",
             ("rice", "bread", "apples", "corn", "seeds", "grass", "cheese", "carrots", "berries", "nuts")),
    "place": ("the {e} lives in the {v} .", "the {e} does not live in the {v} .", "where does the {e} live ?",
              PLACES),
    "name": ("the {e} is called {v} .", "the {e} is not called {v} .", "what is the {e} called ?",
             ("tom", "anna", "max", "lily", "sam", "rosa", "leo", "mia", "ben", "zoe")),
    "drink": ("the {e} drinks {v} .", "the {e} does not drink {v} .", "what does the {e} drink ?",
              ("milk", "water", "tea", "juice", "coffee", "lemonade")),
    "toy": ("the {e} plays with a {v} .", "the {e} does not play with a {v} .", "what does the {e} play with ?",
            ("ball", "kite", "drum", "rope", "stick", "doll", "puzzle", "whistle")),
    "season": ("the {e} sleeps in {v} .", "the {e} does not sleep in {v} .", "when does the {e} sleep ?",
               ("winter", "summer", "spring", "autumn")),
    "mood": ("the {e} feels {v} .", "the {e} does not feel {v} .", "how does the {e} feel ?",
             ("happy", "sad", "angry", "calm", "tired", "sleepy", "proud", "shy")),
}


# ---------------------------------------------------------------- vocabulary


def _collect_vocabulary() -> tuple[str, ...]:
    words: set[str] = set()
    values = tuple(v for rel in RELATIONS.values() for v in rel[3])
    for group in (POSITIVE, NEGATIVE, FILM_NOUNS, INTENSIFIERS, NEUTRAL_ADJECTIVES, SUBJECTS, ENTITIES, TIMES,
                  values):
        for phrase in group:
            words.update(phrase.split())
    for triple in VERBS + OBJECTS:
        words.update(triple)
    templates = (SST2_TEMPLATES + SST2_NEGATED_TEMPLATES + (SST2_MIXED_TEMPLATE,) + MRPC_TEMPLATES
                 + tuple(t for rel in RELATIONS.values() for t in rel[:3]))
    for template in templates:
        words.update(w for w in template.split() if not w.startswith("{"))
    return tuple(sorted(words))


# ---------------------------------------------------------------- sst2


def _sentiment_sentence(rng: random.Random, label: int) -> str:
    adjectives = POSITIVE if label == 1 else NEGATIVE
    n, n2 = rng.sample(FILM_NOUNS, 2)
    adj, adj2 = rng.sample(adjectives, 2)
    return rng.choice(SST2_TEMPLATES).format(
        n=n, n2=n2, adj=adj, adj2=adj2, adv=rng.choice(INTENSIFIERS), neu=rng.choice(NEUTRAL_ADJECTIVES)
    )


def _negated_sentence(rng: random.Random, label: int) -> str:
    """"not" before a word of the opposite polarity: "the plot was not good ." is negative."""
    adj = rng.choice(NEGATIVE if label == 1 else POSITIVE)
    return rng.choice(SST2_NEGATED_TEMPLATES).format(
        n=rng.choice(FILM_NOUNS), adj=adj, neu=rng.choice(NEUTRAL_ADJECTIVES))


def _mixed_sentence(rng: random.Random) -> str:
    """One positive and one negative word, about two different things: a mixed review."""
    n, n2 = rng.sample(FILM_NOUNS, 2)
    pos, neg = rng.choice(POSITIVE), rng.choice(NEGATIVE)
    adj, adj2 = (pos, neg) if rng.random() < 0.5 else (neg, pos)
    return SST2_MIXED_TEMPLATE.format(n=n, n2=n2, adj=adj, adj2=adj2)


def _make_sst2(rng: random.Random, idx: int) -> dict:
    label = rng.randrange(2)
    u = rng.random()
    if u < SST2_MIXED_SHARE:
        text = _mixed_sentence(rng)
    elif u < SST2_MIXED_SHARE + SST2_NEGATED_SHARE:
        text = _negated_sentence(rng, label)
    else:
        text = _sentiment_sentence(rng, label)
    return {"idx": idx, "text_a": text, "text_b": None, "label": label}


# ---------------------------------------------------------------- mrpc

MRPC_TEMPLATES = (
    "the {s} {v} the {o} {t} .",    # sentence 1
    "{t} , the {s} {v} the {o} .",  # restatement: time first
    "the {o} was {v} by the {s} {t} .",  # restatement: passive voice
)


def _event(rng: random.Random) -> dict:
    return {"s": rng.choice(SUBJECTS), "v": rng.choice(VERBS), "o": rng.choice(OBJECTS), "t": rng.choice(TIMES)}


def _state_event(e: dict) -> str:
    return MRPC_TEMPLATES[0].format(s=e["s"], v=e["v"][0], o=e["o"][0], t=e["t"])


def _restate_event(rng: random.Random, e: dict, reworded: bool) -> str:
    """A different word order (time first, or passive voice); verb and object each a synonym with probability
    MRPC_REWORD_PARAPHRASE when `reworded` (a paraphrase), else MRPC_REWORD_UNRELATED."""
    p = MRPC_REWORD_PARAPHRASE if reworded else MRPC_REWORD_UNRELATED
    verb = e["v"][1] if rng.random() < p else e["v"][0]
    obj = e["o"][1] if rng.random() < p else e["o"][0]
    template = MRPC_TEMPLATES[1] if rng.random() < 0.5 else MRPC_TEMPLATES[2]
    return template.format(s=e["s"], v=verb, o=obj, t=e["t"])


def _unrelated_event(rng: random.Random, e: dict) -> dict:
    """An event sharing no subject, verb, object or time with `e`."""
    return {
        "s": rng.choice([x for x in SUBJECTS if x != e["s"]]),
        "v": rng.choice([x for x in VERBS if x != e["v"]]),
        "o": rng.choice([x for x in OBJECTS if x != e["o"]]),
        "t": rng.choice([x for x in TIMES if x != e["t"]]),
    }


def _make_mrpc(rng: random.Random, idx: int) -> dict:
    label = rng.randrange(2)  # 1 = equivalent
    first = _event(rng)
    second = first if label == 1 else _unrelated_event(rng, first)
    return {"idx": idx, "text_a": _state_event(first), "text_b": _restate_event(rng, second, label == 1),
            "label": label}


# ---------------------------------------------------------------- facts (rte, squad_v2)

Fact = tuple[str, str, str]  # (entity, relation, value)


def _facts(rng: random.Random, n: int, values_per_relation: int | None = None) -> list[Fact]:
    """n facts with distinct entities and distinct relations (so distinct values); each value among its
    relation's first `values_per_relation` (all by default)."""
    entities = rng.sample(ENTITIES, n)
    relations = rng.sample(tuple(RELATIONS), n)
    return [(e, rel, rng.choice(RELATIONS[rel][3][:values_per_relation]))
            for e, rel in zip(entities, relations, strict=True)]


def _state_fact(fact: Fact, negated: bool = False) -> str:
    e, rel, v = fact
    return RELATIONS[rel][1 if negated else 0].format(e=e, v=v)


def _absent_fact(rng: random.Random, facts: list[Fact]) -> Fact:
    """A fact about an entity the facts do not mention, under a relation they do not use."""
    entity = rng.choice([e for e in ENTITIES if e not in {f[0] for f in facts}])
    rel = rng.choice([r for r in RELATIONS if r not in {f[1] for f in facts}])
    return entity, rel, rng.choice(RELATIONS[rel][3])


# ---------------------------------------------------------------- rte


def _make_rte(rng: random.Random, idx: int) -> dict:
    label = rng.randrange(2)  # 0 = entailment, 1 = not_entailment (GLUE order)
    facts = _facts(rng, rng.randint(*RTE_PREMISE_FACTS))
    negated = [rng.random() < RTE_NEGATED_PREMISE_FACT for _ in facts]
    i = rng.randrange(len(facts))
    if label == 0:
        hypothesis = _state_fact(facts[i], negated[i])
    elif rng.random() < RTE_NEGATION_SHARE:
        hypothesis = _state_fact(facts[i], not negated[i])
    else:
        hypothesis = _state_fact(_absent_fact(rng, facts), rng.random() < RTE_NEGATED_PREMISE_FACT)
    premise = " ".join(_state_fact(f, n) for f, n in zip(facts, negated, strict=True))
    return {"idx": idx, "text_a": premise, "text_b": hypothesis, "label": label}


# ---------------------------------------------------------------- squad_v2


def _make_squad_article(rng: random.Random, article: int, tag: str) -> list[dict]:
    """One context (its own article) with 1-3 questions about different entities."""
    facts = _facts(rng, rng.randint(*SQUAD_CONTEXT_FACTS), SQUAD_VALUES_PER_RELATION)
    sentences = [_state_fact(f) for f in facts]
    context = " ".join(sentences)
    starts = [sum(len(s) + 1 for s in sentences[:i]) for i in range(len(sentences))]
    records = []
    asked = rng.sample(range(len(facts)), rng.randint(1, min(3, len(facts))))
    for j, i in enumerate(asked):
        title = f"{tag}-{article:05d}"
        if rng.random() < UNANSWERABLE_RATE:
            absent_entity, rel, _ = _absent_fact(rng, facts)
            if rng.random() < SQUAD_ADVERSARIAL_SHARE:  # a relation the context uses, about an absent entity
                rel = facts[i][1]
            question = RELATIONS[rel][2].format(e=absent_entity)
            answers: dict = {"text": [], "answer_start": []}
        else:
            e, rel, v = facts[i]
            question = RELATIONS[rel][2].format(e=e)
            # the value ends its sentence: "... {v} ."
            answers = {"text": [v], "answer_start": [starts[i] + len(sentences[i]) - len(v) - 2]}
        if all(r["question"] != question for r in records):
            records.append({"id": f"{title}-{j}", "title": title, "context": context, "question": question,
                            "answers": answers})
    return records


# ---------------------------------------------------------------- generation

Maker = Callable[[random.Random, int], dict]
_MAKERS: dict[str, Maker] = {"sst2": _make_sst2, "mrpc": _make_mrpc, "rte": _make_rte}


def dedupe_key(task: str, record: dict) -> Hashable:
    """What must not repeat within or across splits: the text pair, or the SQuAD context."""
    if get_task(task).is_qa:
        return record["context"]
    return (record["text_a"], record["text_b"])


def generate(task: str, n: int, seed: int, exclude: Collection[Hashable] = ()) -> list[dict]:
    """n canonical records, deterministic for (task, n, seed); no key repeats or appears in `exclude`."""
    spec = get_task(task)
    if not spec.is_qa and task not in _MAKERS:   # synthetic data is code per task, not a table entry
        raise TunebenchError(f"builtin {task}: no synthetic generator for this task (tunebench.data.builtin); "
                             "use data.source=local or hub")
    rng = random.Random(seed)
    seen = set(exclude)
    records: list[dict] = []
    for attempt in range(100 * n + 1000):  # the spaces are large; a bound keeps a bad request finite
        if len(records) >= n:
            break
        if spec.is_qa:
            batch = _make_squad_article(rng, attempt, f"b{seed:x}")
        else:
            batch = [_MAKERS[task](rng, len(records))]
        key = dedupe_key(task, batch[0])
        if key in seen:
            continue
        seen.add(key)
        records.extend(batch[: n - len(records)])
    if len(records) < n:
        raise TunebenchError(f"builtin {task}: cannot generate {n} distinct examples (got {len(records)})")
    return records


def derive_seed(split_seed: int, task: str, split: str) -> int:
    """A stable per-(task, split) seed (not Python's salted hash), so train and test never share a stream."""
    digest = hashlib.sha256(f"tunebench-builtin/{split_seed}/{task}/{split}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def generate_splits(task: str, train_size: int, test_size: int, split_seed: int) -> dict[str, list[dict]]:
    """Builtin train and test; test is generated first and train excludes its texts (no overlap)."""
    test = generate(task, test_size, derive_seed(split_seed, task, "test"))
    exclude = {dedupe_key(task, r) for r in test}
    train = generate(task, train_size, derive_seed(split_seed, task, "train"), exclude=exclude)
    return {"train": train, "test": test}


VOCABULARY: tuple[str, ...] = _collect_vocabulary()
