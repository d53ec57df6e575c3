"""Category tables of the supported panoptic datasets (used by the synthetic generator and as fallbacks).

Cityscapes-VPS uses the 19 Cityscapes train ids (names, colours and thing flags of cityscapesScripts).
The VIPSeg table is *VIPSeg-like*: 124 names in the dataset's style (underscores, ``person`` = 60,
i.e. panomask value 61) with 58 things; the reader always takes the real table from the dataset's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    """One panoptic category: dataset id, name, thing (countable, has instances) or stuff, display colour."""

    id: int
    name: str
    isthing: bool
    color: tuple[int, int, int] | None = None


CITYSCAPES_VOID = 255  # panoptic_inst value of unlabelled pixels

_CITYSCAPES = [
    ("road", 0, (128, 64, 128), "flat"),
    ("sidewalk", 0, (244, 35, 232), "flat"),
    ("building", 0, (70, 70, 70), "construction"),
    ("wall", 0, (102, 102, 156), "construction"),
    ("fence", 0, (190, 153, 153), "construction"),
    ("pole", 0, (153, 153, 153), "object"),
    ("traffic light", 0, (250, 170, 30), "object"),
    ("traffic sign", 0, (220, 220, 0), "object"),
    ("vegetation", 0, (107, 142, 35), "nature"),
    ("terrain", 0, (152, 251, 152), "nature"),
    ("sky", 0, (70, 130, 180), "sky"),
    ("person", 1, (220, 20, 60), "human"),
    ("rider", 1, (255, 0, 0), "human"),
    ("car", 1, (0, 0, 142), "vehicle"),
    ("truck", 1, (0, 0, 70), "vehicle"),
    ("bus", 1, (0, 60, 100), "vehicle"),
    ("train", 1, (0, 80, 100), "vehicle"),
    ("motorcycle", 1, (0, 0, 230), "vehicle"),
    ("bicycle", 1, (119, 11, 32), "vehicle"),
]

CITYSCAPES_SUPERCATEGORY = {i: s for i, (_, _, _, s) in enumerate(_CITYSCAPES)}

CITYSCAPES_CATEGORIES: dict[int, Category] = {
    i: Category(i, name, bool(thing), color) for i, (name, thing, color, _) in enumerate(_CITYSCAPES)
}

_VIPSEG_NAMES = (
    "wall ceiling door stair ladder escalator Playground_slide handrail_or_fence window rail goal pillar pole "
    "floor ground grass sand athletic_field road path crosswalk building house bridge tower windmill "
    "well_or_well_lid other_construction sky mountain stone wood ice snowfield grandstand sea river lake "
    "waterfall water billboard_or_Bulletin_Board sculpture pipeline flag parasol_or_umbrella cushion_or_carpet "
    "tent roadblock car bus truck bicycle motorcycle wheeled_machine ship_or_boat raft airplane tyre "
    "traffic_light lamp person cat dog horse cattle other_animal tree flower other_plant toy ball_net backboard "
    "skateboard bat ball cupboard_or_showcase_or_storage_rack box traveling_case_or_trolley_case basket "
    "bag_or_package trash_can cage plate tub_or_bowl_or_pot bottle_or_cup barrel fishbowl bed pillow "
    "table_or_desk chair_or_seat bench sofa shelf bathtub gun commode roaster other_machine refrigerator "
    "washing_machine Microwave_oven fan curtain textiles clothes painting_or_poster mirror flower_pot_or_vase "
    "clock book tool blackboard tissue screen_or_television computer printer Mobile_phone keyboard "
    "other_electronic_product fruit food instrument train"
).split()

_VIPSEG_STUFF_AFTER_48 = {
    "tree", "flower", "other_plant", "ball_net", "backboard", "cupboard_or_showcase_or_storage_rack", "cage",
    "bed", "shelf", "bathtub", "commode", "curtain", "textiles", "painting_or_poster", "mirror", "blackboard",
    "food", "fruit",
}  # fmt: skip


def _vipseg_color(i: int) -> tuple[int, int, int]:
    """A fixed, well-spread display colour per VIPSeg-like category (golden-ratio hue walk)."""
    import colorsys

    r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.55 + 0.4 * ((i * 7) % 3) / 2, 0.85)
    return int(r * 255), int(g * 255), int(b * 255)


VIPSEG_CATEGORIES: dict[int, Category] = {
    i: Category(i, name, i >= 48 and name not in _VIPSEG_STUFF_AFTER_48, _vipseg_color(i))
    for i, name in enumerate(_VIPSEG_NAMES)
}

VIPSEG_NUM_STUFF_VALUES = 124  # panomask values 1..124 are stuff (category = v - 1); larger are things


def category_by_name(table: dict[int, Category], name: str) -> Category:
    """Look a category up by its exact name."""
    for c in table.values():
        if c.name == name:
            return c
    raise KeyError(name)
