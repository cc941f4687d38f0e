"""The CORINE Land Cover nomenclature: 44 level-3 classes in 5 level-1 groups.

Source: CORINE Land Cover nomenclature (European Environment Agency, Copernicus Land Monitoring Service),
levels 1 to 3. Layers store the three-digit level-3 code (111 ... 523); the EEA's raster product instead
stores a grid code 1 ... 44 (48 = no data), which `from_grid_code` translates.

`natural` marks the classes counted as natural habitat in the ratios and KPIs: forests and semi-natural
areas (3xx), wetlands (4xx) and water bodies (5xx). Agricultural mosaics with natural vegetation (243,
244) are agricultural in CORINE and stay so here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CorineGroup:
    """A level-1 group."""

    key: str  # stable machine name used in results and data files
    level1: int
    label: str


@dataclass(frozen=True)
class CorineClass:
    """A level-3 class."""

    code: int
    label: str
    level2: int
    level2_label: str
    group: CorineGroup

    @property
    def natural(self) -> bool:
        return self.group.level1 in (3, 4, 5)


ARTIFICIAL = CorineGroup("artificial", 1, "Artificial surfaces")
AGRICULTURAL = CorineGroup("agricultural", 2, "Agricultural areas")
FOREST_SEMI_NATURAL = CorineGroup("forest_semi_natural", 3, "Forest and semi-natural areas")
WETLANDS = CorineGroup("wetlands", 4, "Wetlands")
WATER = CorineGroup("water", 5, "Water bodies")

GROUPS: tuple[CorineGroup, ...] = (ARTIFICIAL, AGRICULTURAL, FOREST_SEMI_NATURAL, WETLANDS, WATER)
GROUP_BY_KEY: dict[str, CorineGroup] = {g.key: g for g in GROUPS}

# A class the nomenclature does not know (e.g. 999 "unclassified" in some national products).
UNCLASSIFIED = CorineGroup("unclassified", 9, "Unclassified")

_LEVEL2: dict[int, str] = {
    11: "Urban fabric",
    12: "Industrial, commercial and transport units",
    13: "Mine, dump and construction sites",
    14: "Artificial, non-agricultural vegetated areas",
    21: "Arable land",
    22: "Permanent crops",
    23: "Pastures",
    24: "Heterogeneous agricultural areas",
    31: "Forests",
    32: "Scrub and/or herbaceous vegetation associations",
    33: "Open spaces with little or no vegetation",
    41: "Inland wetlands",
    42: "Maritime wetlands",
    51: "Inland waters",
    52: "Marine waters",
}

_LEVEL3: dict[int, str] = {
    111: "Continuous urban fabric",
    112: "Discontinuous urban fabric",
    121: "Industrial or commercial units",
    122: "Road and rail networks and associated land",
    123: "Port areas",
    124: "Airports",
    131: "Mineral extraction sites",
    132: "Dump sites",
    133: "Construction sites",
    141: "Green urban areas",
    142: "Sport and leisure facilities",
    211: "Non-irrigated arable land",
    212: "Permanently irrigated land",
    213: "Rice fields",
    221: "Vineyards",
    222: "Fruit trees and berry plantations",
    223: "Olive groves",
    231: "Pastures",
    241: "Annual crops associated with permanent crops",
    242: "Complex cultivation patterns",
    243: "Land principally occupied by agriculture, with significant areas of natural vegetation",
    244: "Agro-forestry areas",
    311: "Broad-leaved forest",
    312: "Coniferous forest",
    313: "Mixed forest",
    321: "Natural grasslands",
    322: "Moors and heathland",
    323: "Sclerophyllous vegetation",
    324: "Transitional woodland-shrub",
    331: "Beaches, dunes, sands",
    332: "Bare rocks",
    333: "Sparsely vegetated areas",
    334: "Burnt areas",
    335: "Glaciers and perpetual snow",
    411: "Inland marshes",
    412: "Peat bogs",
    421: "Salt marshes",
    422: "Salines",
    423: "Intertidal flats",
    511: "Water courses",
    512: "Water bodies",
    521: "Coastal lagoons",
    522: "Estuaries",
    523: "Sea and ocean",
}

CLASSES: dict[int, CorineClass] = {
    code: CorineClass(code, label, code // 10, _LEVEL2[code // 10], GROUPS[code // 100 - 1])
    for code, label in _LEVEL3.items()
}

# EEA raster grid codes 1..44 follow the level-3 codes in ascending order.
_GRID_TO_CODE: dict[int, int] = {i + 1: code for i, code in enumerate(sorted(CLASSES))}
GRID_CODE_NODATA = 48  # the EEA raster's "NODATA"; 49 and 50 are "UNCLASSIFIED" land / water

# Classes that stand in for layers a deployment lacks (analysis.md step 4).
URBAN_FABRIC_CODES: frozenset[int] = frozenset({111, 112})
WATER_CODES: frozenset[int] = frozenset({511, 512, 521, 522, 523})
WETLAND_CODES: frozenset[int] = frozenset({411, 412, 421, 422, 423})


def lookup(code: int) -> CorineClass | None:
    """The class of a three-digit level-3 code, or None when the nomenclature does not know it."""
    return CLASSES.get(code)


def label(code: int) -> str:
    cls = CLASSES.get(code)
    return cls.label if cls else f"Unknown class (code {code})"


def group(code: int) -> CorineGroup:
    cls = CLASSES.get(code)
    return cls.group if cls else UNCLASSIFIED


def from_grid_code(grid_code: int) -> int | None:
    """Three-digit code of an EEA raster grid code (1..44); None for no data and unclassified cells."""
    return _GRID_TO_CODE.get(grid_code)


def parse_code(value: object) -> int | None:
    """A level-3 code from a layer's attribute ('111', 111, 111.0); None when it is not a number."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip())
    except ValueError:
        return None
    if number != number or not number.is_integer():
        return None
    return int(number)


# The CORINE Land Cover legend colours of the EEA (RGB), by level-3 code: maps and the report use them
# so a reader recognises the classes.
_RGB: dict[int, tuple[int, int, int]] = {
    111: (230, 0, 77),
    112: (255, 0, 0),
    121: (204, 77, 242),
    122: (204, 0, 0),
    123: (230, 204, 204),
    124: (230, 204, 230),
    131: (166, 0, 204),
    132: (166, 77, 0),
    133: (255, 77, 255),
    141: (255, 166, 255),
    142: (255, 230, 255),
    211: (255, 255, 168),
    212: (255, 255, 0),
    213: (230, 230, 0),
    221: (230, 128, 0),
    222: (242, 166, 77),
    223: (230, 166, 0),
    231: (230, 230, 77),
    241: (255, 230, 166),
    242: (255, 230, 77),
    243: (230, 204, 77),
    244: (242, 204, 166),
    311: (128, 255, 0),
    312: (0, 166, 0),
    313: (77, 255, 0),
    321: (204, 242, 77),
    322: (166, 255, 128),
    323: (166, 230, 77),
    324: (166, 242, 0),
    331: (230, 230, 230),
    332: (204, 204, 204),
    333: (204, 255, 204),
    334: (0, 0, 0),
    335: (166, 230, 204),
    411: (166, 166, 255),
    412: (77, 77, 255),
    421: (204, 204, 255),
    422: (230, 230, 255),
    423: (166, 166, 230),
    511: (0, 204, 242),
    512: (128, 242, 230),
    521: (0, 255, 166),
    522: (166, 255, 230),
    523: (230, 242, 255),
}
UNKNOWN_COLOUR = "#9e9e9e"  # a code outside the nomenclature


def colour(code: int) -> str:
    """The legend colour of a level-3 code as `#rrggbb` (grey for an unknown code)."""
    rgb = _RGB.get(code)
    return "#{:02x}{:02x}{:02x}".format(*rgb) if rgb else UNKNOWN_COLOUR
