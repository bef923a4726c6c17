"""The analysis' texts: the builtin held-out text, and the paragraphs the report's methods section gives the
analysis (`analysis_methods_text`: what each measure of the update spectra and of forgetting is, with sources).

The builtin held-out text for the forgetting measure: short paragraphs of plain general English prose,
written for tunebench (no source text copied), on subjects far from the study's tasks (no film reviews, no
paraphrase pairs, no questions). Shipped as a Python constant so that it needs no package-data entry.

About 4 KB in twelve paragraphs of about 65 words: enough to tell a model that has been damaged from one that
has not, not a benchmark. For published numbers use a larger set (`--text hub:NAME` or a text file).
"""

from __future__ import annotations

BUILTIN_NAME = "builtin"

BUILTIN_PARAGRAPHS: tuple[str, ...] = (
    "Most towns grew up beside water. A river gave people something to drink, a way to move heavy goods and "
    "a reason for travellers to stop. The first bridge was often no more than a few planks laid across a "
    "narrow point, and the market that formed at either end of it became, over a century or two, the centre "
    "of a small city. Many old streets still follow the paths that carts once took down to the crossing.",

    "Bread is one of the oldest prepared foods. Flour, water, salt and a little yeast are mixed into a "
    "dough, which is kneaded until it becomes smooth and springy. While it rests, the yeast feeds on sugars "
    "in the flour and releases gas, so the dough slowly rises. A hot oven then sets the structure, browns "
    "the crust and fills the kitchen with a smell that few people can ignore.",

    "The weather on a mountain can change within minutes. A clear morning may turn cloudy by noon as warm "
    "air from the valleys rises, cools and forms clouds around the peaks. Experienced walkers start early, "
    "carry an extra layer of clothing and turn back when the wind picks up, because the summit will still "
    "be there next year.",

    "A public library is a quiet promise that knowledge should be shared. Anyone may walk in, sit at a "
    "table and read for an afternoon without paying. Besides books, most libraries now lend music, films "
    "and computers, run reading groups for children and help people fill in forms or search for work. The "
    "librarian at the front desk often knows the neighbourhood better than anyone else.",

    "Bees do more than make honey. As they move from flower to flower collecting nectar, they carry pollen "
    "on their bodies, and that pollen fertilises the plants they visit. Apples, almonds, beans and many "
    "other crops depend on this work. Farmers sometimes rent hives during the spring so that their orchards "
    "will produce a good harvest later in the year.",

    "Learning a second language changes the way a person listens. At first every sentence is a puzzle, and "
    "the learner catches only a word here and there. After some months the sounds begin to separate into "
    "words, the words into phrases, and one day a joke is understood without translation. Regular practice, "
    "even for ten minutes a day, matters more than long sessions once a week.",

    "The railway changed how people thought about time. Before trains, each town kept its own local time "
    "by the position of the sun, so noon in one place was a few minutes earlier than noon in the next. "
    "Timetables made that confusing, and countries gradually agreed on standard time zones. Today a clock "
    "on a phone adjusts itself automatically when its owner crosses a border.",

    "A garden teaches patience. Seeds planted in early spring show nothing for days, then a pale shoot "
    "pushes through the soil. The gardener waters, pulls out weeds and watches for insects, but much of the "
    "work is simply waiting. By late summer the same small patch may hold tomatoes, beans, herbs and a row "
    "of tall yellow flowers that lean toward the afternoon light.",

    "Maps are never complete pictures of the world. A map for sailors shows depths, rocks and lighthouses "
    "but ignores the roads inland, while a map for drivers shows motorways and petrol stations but no "
    "contour lines. Every map maker decides what to include and what to leave out, and the best maps are "
    "the ones that show exactly what their readers need and nothing more.",

    "Sleep is not a pause in the life of the brain. During the night it sorts the events of the day, "
    "strengthens some memories and lets others fade. People who sleep too little find it harder to "
    "concentrate, to learn new skills and to keep their temper. A regular bedtime, a dark room and fewer "
    "screens in the last hour of the evening usually help more than any medicine.",

    "When a ship is built, its hull is tested long before it reaches the sea. Engineers make a small model "
    "and pull it through a long tank of water, measuring how much force is needed at different speeds. "
    "Small changes to the shape of the bow can save a great deal of fuel over the life of the vessel, so "
    "the tests are repeated many times.",

    "Letters were once the main way to keep in touch with friends who lived far away. People wrote several "
    "pages by hand, described their days in detail and waited weeks for a reply. Some families still keep "
    "boxes of old letters in the attic, and reading them can feel like listening to a conversation that "
    "took place long before anyone now alive was born.",
)

BUILTIN_TEXT = "\n\n".join(BUILTIN_PARAGRAPHS)


def analysis_methods_text(energy: float = 0.9, top_k: int = 10, eps: float = 0.5) -> list[str]:
    """Paragraphs for the report's methods section on `tunebench analyze` (definitions in
    tunebench.analysis.spectrum and .forgetting); `energy`, `top_k` and `eps` are the analysis settings."""
    share = f"{100 * energy:g}%"
    return [
        "Weight-update spectra: for each adapted matrix, dW = W_after - W_before (LoRA: the merged update "
        "B A alpha / r), with singular values s_1 >= s_2 >= ... Two ranks, under their own names. Energy rank "
        f"({share}): the smallest k with s_1^2 + ... + s_k^2 >= {energy:g} ||dW||_F^2, the number of directions "
        "that carry most of the update (Biderman et al., 2024, \"LoRA Learns Less and Forgets Less\"); an "
        "integer, at most r for LoRA. Effective rank (Roy-Vetterli): exp(-sum_i p_i ln p_i) with "
        "p_i = s_i / sum_j s_j (Roy and Vetterli, 2007, \"The effective rank: a measure of effective "
        "dimensionality\"), how evenly the update spreads over its directions; real-valued, 1 for a rank-one "
        "update, k for k equal singular values, never above the rank. Stable rank: ||dW||_F^2 / ||dW||_2^2. "
        "Analyses written before the two were told apart (analysis.json schema 1) hold the energy rank only.",
        f"Intruder dimensions: among the top {top_k} left singular vectors of W_after, those whose largest "
        f"|cosine| with every left singular vector of W_before is below {eps:g} (Shuttleworth et al., 2024, "
        "\"LoRA vs Full Fine-tuning: An Illusion of Equivalence\"; the test PEFT applies to merged LoRA weights).",
        "Forgetting: the causal-LM loss (nats per token) on held-out general text, after minus before "
        "fine-tuning, with the base model's LM head (tied to the tuned embeddings where the checkpoint ties "
        "them). On the random tiny model these numbers test the plumbing, not a model.",
    ]
