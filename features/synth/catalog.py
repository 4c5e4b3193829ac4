"""Fixed vocabulary of the synthetic marketplace: categories, brands, regions and texts.

Brand names are invented, so the synthetic data never makes claims about real companies. The
categories, production regions and replica vocabulary follow the seed articles and
``notes/TEXT_TERMS.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Category -> (share of genuine stores, share of counterfeit stores, typical unbranded price).
CATEGORIES: dict[str, tuple[float, float, float]] = {
    "apparel": (0.25, 0.24, 25.0),
    "footwear": (0.12, 0.18, 40.0),
    "electronics": (0.15, 0.14, 20.0),
    "cosmetics": (0.14, 0.12, 12.0),
    "liquor": (0.06, 0.07, 30.0),
    "cigarettes": (0.03, 0.06, 8.0),
    "pesticide": (0.04, 0.04, 15.0),
    "watches": (0.08, 0.10, 35.0),
    "supplements": (0.13, 0.05, 18.0),
}

# Category -> product nouns with their price factor against the brand's reference price.
PRODUCTS: dict[str, tuple[tuple[str, float], ...]] = {
    "apparel": (
        ("T-shirt", 0.4),
        ("hoodie", 0.9),
        ("jacket", 2.0),
        ("jeans", 1.0),
        ("polo shirt", 0.6),
        ("cap", 0.35),
        ("handbag", 2.5),
        ("belt", 0.5),
    ),
    "footwear": (
        ("running shoes", 1.0),
        ("sneakers", 0.9),
        ("basketball shoes", 1.3),
        ("sandals", 0.4),
        ("boots", 1.5),
        ("slides", 0.3),
    ),
    "electronics": (
        ("DDR4 RAM 8GB", 0.5),
        ("DDR4 RAM 16GB", 0.9),
        ("DDR5 RAM 32GB", 2.0),
        ("SSD 1TB", 1.6),
        ("microSD card 128GB", 0.4),
        ("USB flash drive 64GB", 0.25),
        ("wireless earbuds", 1.2),
    ),
    "cosmetics": (
        ("lipstick", 0.6),
        ("foundation", 0.9),
        ("eau de parfum 50ml", 2.0),
        ("face cream", 1.2),
        ("serum", 1.4),
        ("mascara", 0.5),
    ),
    "liquor": (
        ("baijiu 500ml", 1.0),
        ("whisky 700ml", 0.8),
        ("cognac 700ml", 1.5),
        ("gift box 2x500ml", 2.2),
    ),
    "cigarettes": (("carton of 10 packs", 1.0), ("pack of 20", 0.1), ("slim carton", 1.1)),
    "pesticide": (
        ("herbicide 1L", 1.0),
        ("insecticide 500ml", 0.8),
        ("fungicide 250g", 0.6),
        ("glyphosate 5L", 2.5),
    ),
    "watches": (
        ("automatic watch", 1.0),
        ("chronograph", 1.3),
        ("diver watch", 1.1),
        ("dress watch", 0.8),
        ("smartwatch", 0.4),
    ),
    "supplements": (
        ("whey protein 2kg", 1.5),
        ("vitamin C 120 tabs", 0.4),
        ("fish oil 90 caps", 0.5),
        ("weight-loss capsules", 0.8),
        ("collagen powder", 0.9),
    ),
}

# Category -> (brand name, reference price); the first three of each are the famous brands
# that rights holders watch most closely.
_BRANDS: dict[str, tuple[tuple[str, float], ...]] = {
    "apparel": (
        ("Valtrio", 120.0),
        ("Norvik", 95.0),
        ("Maison Aurel", 420.0),
        ("Kestrelle", 60.0),
        ("Brightfold", 45.0),
        ("Urbano Lane", 55.0),
        ("Pelion", 80.0),
        ("Corvani", 150.0),
        ("Tidewear", 35.0),
        ("Ashgrove", 70.0),
        ("Linden & Co", 90.0),
        ("Sorello", 200.0),
    ),
    "footwear": (
        ("Stridex", 130.0),
        ("Aerona", 150.0),
        ("Conveyo", 75.0),
        ("Rallyfoot", 90.0),
        ("Pacewell", 110.0),
        ("Trailmark", 140.0),
        ("Soleva", 65.0),
        ("Kinetik", 120.0),
        ("Marlow Boots", 180.0),
        ("Quickstep", 55.0),
        ("Hopper", 45.0),
    ),
    "electronics": (
        ("Samtek", 80.0),
        ("Kingmem", 60.0),
        ("Coraid", 95.0),
        ("Vantrix", 70.0),
        ("Memora", 50.0),
        ("Bytefield", 65.0),
        ("Altacore", 110.0),
        ("Nexio", 45.0),
        ("Solidtrace", 85.0),
        ("Polaris Digital", 75.0),
        ("Quanta Mem", 55.0),
        ("Voltis", 40.0),
    ),
    "cosmetics": (
        ("Lumiere Paris", 55.0),
        ("Belle Rose", 40.0),
        ("Orchidea", 70.0),
        ("Velvette", 35.0),
        ("Dermacalm", 30.0),
        ("Aurora Skin", 45.0),
        ("Seren", 60.0),
        ("Mistral Beauty", 50.0),
        ("Petalique", 38.0),
        ("Glowra", 28.0),
        ("Nuvea", 25.0),
    ),
    "liquor": (
        ("Guizhen Maotai", 380.0),
        ("Wuliang Spring", 160.0),
        ("Highland Reserve", 90.0),
        ("Chateau Lorne", 60.0),
        ("Fenhe Gold", 80.0),
        ("Red Crane", 45.0),
        ("Old Harbor", 70.0),
        ("Jade Valley", 120.0),
        ("Duval Cognac", 110.0),
        ("Silver Lotus", 55.0),
    ),
    "cigarettes": (
        ("Zhonghe", 90.0),
        ("Golden Leaf", 60.0),
        ("Marquis", 75.0),
        ("Pandora Slims", 65.0),
        ("Redstone", 50.0),
        ("Blue Crane", 45.0),
        ("Harbor Lights", 55.0),
        ("Imperial Gate", 85.0),
        ("Everpeak", 40.0),
        ("Lotus Mild", 48.0),
    ),
    "pesticide": (
        ("Agrimax", 35.0),
        ("Cropshield", 28.0),
        ("Fieldguard", 42.0),
        ("Verdant Pro", 30.0),
        ("Harvestone", 25.0),
        ("Terrasafe", 38.0),
        ("Bioclear", 32.0),
        ("Growell", 22.0),
        ("Planta Defend", 27.0),
        ("Agrosol", 20.0),
    ),
    "watches": (
        ("Rolvex", 6500.0),
        ("Omegard", 4200.0),
        ("Tagline", 2100.0),
        ("Cartella", 5200.0),
        ("Seikon", 450.0),
        ("Breitmann", 3800.0),
        ("Longvale", 1500.0),
        ("Citizon", 300.0),
        ("Tissard", 650.0),
        ("Hublon", 7800.0),
        ("Casova", 120.0),
        ("Fossel", 160.0),
    ),
    "supplements": (
        ("VitaPrime", 35.0),
        ("Optimum Core", 60.0),
        ("Herbalis", 45.0),
        ("NutriPeak", 30.0),
        ("Slimfit Labs", 40.0),
        ("Oceanic Omega", 28.0),
        ("Colla Gen", 38.0),
        ("Pure Harvest", 25.0),
        ("Apex Whey", 55.0),
        ("Daily Vital", 20.0),
        ("Greenroot", 32.0),
        ("Mynutra", 27.0),
    ),
}

FAMOUS_PER_CATEGORY = 3

# Regions with their share of genuine stores; counterfeit production concentrates in a few.
REGIONS: tuple[tuple[str, float], ...] = (
    ("Guangdong", 0.16),
    ("Zhejiang", 0.13),
    ("Jiangsu", 0.10),
    ("Shanghai", 0.08),
    ("Beijing", 0.06),
    ("Fujian", 0.06),
    ("Shandong", 0.06),
    ("Henan", 0.04),
    ("Sichuan", 0.04),
    ("Hubei", 0.04),
    ("Hunan", 0.03),
    ("Hebei", 0.03),
    ("Anhui", 0.03),
    ("Jiangxi", 0.02),
    ("Liaoning", 0.02),
    ("Shaanxi", 0.02),
    ("Chongqing", 0.02),
    ("Tianjin", 0.02),
    ("Yunnan", 0.02),
    ("Guangxi", 0.02),
)
PRODUCTION_REGIONS: tuple[tuple[str, float], ...] = (
    ("Guangdong", 0.40),
    ("Fujian", 0.30),
    ("Zhejiang", 0.20),
    ("Hebei", 0.10),
)
# Fulfilment hubs that genuine stores ship from when they use a warehouse service.
HUB_REGIONS = ("Zhejiang", "Guangdong", "Jiangsu", "Shanghai", "Henan")

# The replica slang counterfeiters write, as the generator knows it: the common words plus the
# misspellings and coinages sellers invent to get past keyword filters. It is the generator's
# own list, not the detector's (features/store/vocabulary.py), and about half of it is
# unknown to the detector, as new slang always is; "inspired" and "dupe" are also what honest
# "dupe shops" write about their unbranded look-alikes.
REPLICA_TERMS = (
    "replica",
    "1:1",
    "AAA",
    "mirror quality",
    "super copy",
    "top grade",
    "inspired",
    "dupe",
    "repl1ca",
    "reps",
    "1to1",
    "one to one",
    "A+ grade",
    "mirror grade",
    "top-tier",
    "UA quality",
    "same factory",
    "OG batch",
)
# Honest title words, some of which a keyword filter may take for slang.
HARMLESS_TERMS = (
    "original packaging",
    "factory sealed",
    "authentic",
    "with copy holder",
    "OEM packaging",
    "with AAA batteries",
    "copy of invoice included",
)
PLAIN_SUFFIXES = ("", "", "", "2025 new", "free shipping", "gift", "best seller", "limited")
UNBRANDED_ADJECTIVES = (
    "Classic",
    "Unisex",
    "Premium",
    "Basic",
    "Lightweight",
    "Handmade",
    "Everyday",
    "Deluxe",
)

OCR_GENUINE = ("{B}", "{B} AUTHENTIC", "{B} OFFICIAL STORE", "GENUINE PRODUCT {B}")
OCR_REPLICA = (
    "{B} AAA QUALITY",
    "1:1 MIRROR {B}",
    "TOP GRADE COPY",
    "REPLICA {B}",
    "{B} 1TO1 VERSION",
    "REPS {B} OG BATCH",
    "{B} UA QUALITY",
    "SAME FACTORY {B}",
)
# Authenticity claims printed on product images, by honest resellers and by fakers alike.
OCR_CLAIMS = (
    "100% ORIGINAL - NOT A REPLICA",
    "ORIGINAL {B}, NOT A COPY",
    "{B} OEM PARTS",
    "BEWARE OF COPIES - GENUINE {B}",
    "AUTHORISED {B} RESELLER",
)
OCR_UNBRANDED = ("SALE 50% OFF", "NEW ARRIVAL", "FREE SHIPPING")

# Review texts: short ones are what fake-review bursts use; genuine buyers use both.
REVIEWS_SHORT_POSITIVE = (
    "Good",
    "Very good!",
    "Perfect",
    "Nice quality",
    "Fast shipping",
    "Recommended",
    "5 stars",
    "Excellent",
    "Love it",
    "Great seller",
)
REVIEWS_LONG_POSITIVE = (
    "Arrived quickly and exactly as described, will buy from this store again.",
    "Quality is as good as the one I bought in the mall, packaging was intact.",
    "Second time ordering here, the seller answered all my questions patiently.",
    "Fits well and the material feels solid, delivery took a few days.",
    "Good value for the price, the box was slightly dented but the product is fine.",
)
REVIEWS_MIXED = (
    "ok",
    "Average",
    "It is fine but delivery was slow.",
    "Smaller than expected, otherwise ok.",
    "Packaging was damaged, product works.",
)
REVIEWS_NEGATIVE = (
    "Bad",
    "Never again",
    "Arrived broken and the seller does not reply.",
    "Not what the pictures show, asked for a refund.",
    "Took a month to arrive, very disappointed.",
)
# Happy buyers vouching for authenticity, often naming the fakes they feared or got elsewhere.
REVIEWS_AUTHENTIC = (
    "Not fake! Checked the serial number on the brand website.",
    "Genuine, not a knockoff like the ones on other stores.",
    "Was afraid of a counterfeit but it is the real thing.",
    "100% original, same as in the brand shop.",
    "Bought a fake elsewhere before, this one is real.",
)
# Unhappy buyers who think they got a fake (some in words a keyword filter misses).
REVIEWS_NEGATIVE_FAKE = (
    "Fake!",
    "Not original, the logo is wrong.",
    "Smells different from the one I bought in the mall, I think it is fake.",
    "Serial number does not verify on the brand website.",
    "The stitching and the box are clearly a copy.",
)


@dataclass(frozen=True)
class Catalog:
    """Array view of the vocabulary, indexed by integer codes for vectorised generation.

    Attributes:
        categories: Category names; a store's category is an index into this.
        brand_names: Brand names, grouped by category.
        brand_category: Category index of each brand.
        brand_reference: Reference (genuine list) price of each brand.
        brand_famous: Whether each brand is one of its category's famous brands.
        category_brand_start: Index of each category's first brand.
        category_brand_count: Number of brands in each category.
        product_names: Product nouns, grouped by category.
        product_factor: Price factor of each product against the brand reference.
        category_product_start: Index of each category's first product.
        category_product_count: Number of products in each category.
        regions: Region names; region codes index into this.
        region_weights: Share of genuine stores declared in each region.
        production_regions: Region codes where counterfeit production concentrates.
        production_weights: Share of counterfeit rings per production region.
        hub_regions: Region codes of fulfilment hubs.
    """

    categories: tuple[str, ...]
    brand_names: tuple[str, ...]
    brand_category: np.ndarray
    brand_reference: np.ndarray
    brand_famous: np.ndarray
    category_brand_start: np.ndarray
    category_brand_count: np.ndarray
    product_names: tuple[str, ...]
    product_factor: np.ndarray
    category_product_start: np.ndarray
    category_product_count: np.ndarray
    regions: tuple[str, ...]
    region_weights: np.ndarray
    production_regions: np.ndarray
    production_weights: np.ndarray
    hub_regions: np.ndarray

    @property
    def famous_brands(self) -> tuple[str, ...]:
        """Names of the famous brands (the ones rights holders watch)."""
        return tuple(n for n, f in zip(self.brand_names, self.brand_famous, strict=True) if f)


def build_catalog() -> Catalog:
    """Build the array view of the fixed vocabulary.

    Returns:
        The catalog; identical on every call.
    """
    categories = tuple(CATEGORIES)
    names: list[str] = []
    cats: list[int] = []
    refs: list[float] = []
    famous: list[bool] = []
    starts: list[int] = []
    for c, cat in enumerate(categories):
        starts.append(len(names))
        for i, (name, ref) in enumerate(_BRANDS[cat]):
            names.append(name)
            cats.append(c)
            refs.append(ref)
            famous.append(i < FAMOUS_PER_CATEGORY)
    products: list[str] = []
    factors: list[float] = []
    pstarts: list[int] = []
    for cat in categories:
        pstarts.append(len(products))
        for noun, factor in PRODUCTS[cat]:
            products.append(noun)
            factors.append(factor)
    regions = tuple(r for r, _ in REGIONS)
    weights = np.array([w for _, w in REGIONS])
    return Catalog(
        categories=categories,
        brand_names=tuple(names),
        brand_category=np.array(cats, dtype=np.int64),
        brand_reference=np.array(refs),
        brand_famous=np.array(famous),
        category_brand_start=np.array(starts, dtype=np.int64),
        category_brand_count=np.array([len(_BRANDS[c]) for c in categories], dtype=np.int64),
        product_names=tuple(products),
        product_factor=np.array(factors),
        category_product_start=np.array(pstarts, dtype=np.int64),
        category_product_count=np.array([len(PRODUCTS[c]) for c in categories], dtype=np.int64),
        regions=regions,
        region_weights=weights / weights.sum(),
        production_regions=np.array([regions.index(r) for r, _ in PRODUCTION_REGIONS]),
        production_weights=np.array([w for _, w in PRODUCTION_REGIONS]),
        hub_regions=np.array([regions.index(r) for r in HUB_REGIONS]),
    )
