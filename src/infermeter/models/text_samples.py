"""A small sample of sentiment reviews, written for this project, that text models tokenise into inputs.

Lengths spread from a few words to about a hundred, so padding and truncation both happen at the
usual sequence lengths (32..512 tokens). The first eight mix short and long reviews and both
sentiments, because the correctness gate uses the first `check_samples` items.
"""

from __future__ import annotations

REVIEWS: tuple[str, ...] = (
    "Loved it.",
    "The plot dragged badly in the second half, and by the final act I had stopped caring about any of "
    "the characters, even the ones the script clearly wanted me to root for.",
    "A warm, funny and surprisingly moving film about two sisters who inherit a failing bakery.",
    "Terrible sound mixing.",
    "I went in expecting a forgettable summer sequel and came out genuinely impressed. The director takes "
    "the familiar pieces of the franchise, the chases, the banter, the villain with a grudge, and arranges "
    "them with real care. The action is easy to follow, the jokes land more often than not, and the lead "
    "finally gets a scene that lets her act instead of just run. It is not a masterpiece, and the last "
    "twenty minutes lean too hard on computer effects, but I would happily watch it again with friends.",
    "Not worth the ticket price.",
    "The acting is fine but the story never decides what it wants to be.",
    "An absolute joy from the first frame to the last; the soundtrack alone is worth it.",
    "Boring.",
    "Great battery life, a bright screen and a keyboard that feels solid; my only complaint is the weak "
    "speaker.",
    "The hotel room was smaller than the photos suggested, the air conditioning rattled all night, and "
    "breakfast ran out of coffee before eight.",
    "Friendly staff, spotless rooms and a view of the harbour that made the early flight worth it.",
    "I returned the blender after a week because the lid leaked every single time.",
    "Works exactly as described.",
    "This is the third novel in the series and easily the strongest. The author has stopped explaining "
    "the world and simply lets it breathe, so the quiet chapters in the mountain village feel as tense as "
    "the battles. I finished it in two evenings and immediately ordered the next one.",
    "The food was cold, the waiter forgot our drinks twice and the bill included a dish we never ordered.",
    "A clever premise wasted on lazy writing.",
    "Charming, light and beautifully shot.",
    "Customer service kept me on hold for an hour and then hung up on me. I will not be ordering from "
    "this company again, and I have told my family to avoid it too.",
    "The headphones are comfortable for hours and the noise cancelling works well on trains.",
    "Dull characters, predictable twists, and an ending that simply stops.",
    "Best pizza in town, hands down.",
    "The course started well, with clear lectures and useful exercises, but the later modules were "
    "rushed, full of mistakes, and the promised project feedback never arrived. I learned something, "
    "yet I expected much more for the price, and the forum questions went unanswered for weeks.",
    "Stunning visuals but a hollow, confusing story.",
    "My kids asked to watch it again the moment it ended.",
    "The shoes fell apart after two months of normal walking.",
    "A thoughtful documentary that treats its subjects with respect and never talks down to the viewer.",
    "Overpriced and underwhelming.",
    "The app crashes whenever I try to upload a photo, and the latest update made it even slower.",
    "Simple, honest cooking with generous portions and a lovely garden to eat in on warm evenings.",
    "I wanted to like this album, but every song sounds like a weaker copy of the one before it.",
    "Setup took five minutes and the picture quality is excellent.",
    "From the opening scene the film grabs you: a lonely lighthouse keeper, a storm, a stranger washed "
    "ashore. What follows is a slow, patient story about trust and grief, carried by two remarkable "
    "performances. Some viewers will find the pace too gentle, and the subplot about the mainland never "
    "quite connects, but the final image stayed with me for days. It is the kind of quiet, confident "
    "filmmaking that rarely reaches cinemas any more, and I recommend seeing it on the biggest screen "
    "you can find.",
    "The delivery arrived late and the box was crushed.",
    "Surprisingly good.",
    "Flat jokes and a runtime that feels twice as long as it is.",
    "The staff went out of their way to help us when our car broke down nearby.",
    "Cheap materials, a wobbly frame and instructions that skip half the steps.",
    "A gripping thriller with a final twist I honestly did not see coming.",
    "Meh.",
)
