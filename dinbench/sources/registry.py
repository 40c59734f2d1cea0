"""The registry of real datasets ``dinbench download`` knows: files, locations, checksums, licences.

Locations move, so every file lists its candidate URLs in order (tried one after another) and
``--url`` overrides them; ``--from PATH`` takes files the user already has. Checksums: GroupLens
publishes ``<name>.zip.md5`` beside each MovieLens zip, which is fetched and checked; the Amazon
2014 files and Taobao have no published checksum or size, so they are checked by parsing (every
line must be well formed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dinbench.errors import DinbenchError


@dataclass(frozen=True)
class RemoteFile:
    name: str  # file name on disk (and the last segment of its URLs)
    urls: tuple[str, ...] = ()
    md5: str | None = None  # pinned hash, when known
    md5_urls: tuple[str, ...] = ()  # published .md5 files, fetched before the download
    approx_bytes: int | None = None  # for the disk-space check when the server gives no length


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    family: str  # amazon | movielens | taobao
    about: str
    licence: str
    files: tuple[RemoteFile, ...] = ()
    paper: bool = False  # one of the DIN paper's datasets
    local_only: bool = False  # its publisher requires a login: --from only
    options: dict = field(default_factory=dict)  # family specifics (amazon category, movielens layout)


AMAZON_CATEGORIES = (
    "Electronics", "Books", "Beauty", "Clothing_Shoes_and_Jewelry", "Sports_and_Outdoors", "Toys_and_Games",
    "Home_and_Kitchen", "Movies_and_TV", "CDs_and_Vinyl", "Cell_Phones_and_Accessories", "Digital_Music",
    "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Kindle_Store", "Office_Products", "Pet_Supplies",
    "Tools_and_Home_Improvement", "Video_Games", "Musical_Instruments", "Automotive", "Baby",
    "Patio_Lawn_and_Garden", "Amazon_Instant_Video", "Apps_for_Android",
)
# The historical SNAP location first, then the McAuley lab's own copy (its path as linked from
# jmcauley.ucsd.edu/data/amazon/ when this was written; --url overrides both if they move).
AMAZON_BASES = (
    "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/",
    "https://jmcauley.ucsd.edu/data/amazon/categoryFiles/",
)
AMAZON_LICENCE = (
    "Amazon product data (2014), J. McAuley et al., UCSD: for research use; cite R. He and J. McAuley, "
    "WWW 2016, and J. McAuley et al., SIGIR 2015. Do not redistribute."
)
MOVIELENS_BASES = (
    "https://files.grouplens.org/datasets/movielens/",
    "http://files.grouplens.org/datasets/movielens/",
)
MOVIELENS_LICENCE = (
    "MovieLens (GroupLens Research, University of Minnesota): research use only under GroupLens' terms "
    "(README in the archive); no redistribution without permission; cite F. M. Harper and J. A. Konstan, "
    "ACM TiiS 5(4), 2015."
)
TAOBAO_LICENCE = (
    "Taobao UserBehavior (Alibaba, Tianchi dataset 649): download it yourself after logging in at "
    "https://tianchi.aliyun.com/dataset/649 and accept its terms (research use, no redistribution); "
    "cite H. Zhu et al., KDD 2018."
)

# name, zip folder, parser layout, approximate zip size (for the disk check), about
MOVIELENS = (
    ("movielens-100k", "ml-100k", "100k", 5_000_000, "MovieLens 100K: 100,000 ratings, 943 users, 1,682 movies"),
    ("movielens-1m", "ml-1m", "1m", 6_000_000, "MovieLens 1M: 1,000,209 ratings, 6,040 users, 3,706 movies"),
    ("movielens-20m", "ml-20m", "csv", 200_000_000,
     "MovieLens 20M, the DIN paper's: 20,000,263 ratings, 138,493 users, 27,278 movies"),
    ("movielens-25m", "ml-25m", "csv", 265_000_000, "MovieLens 25M: 25,000,095 ratings, 162,541 users"),
    ("movielens-latest-small", "ml-latest-small", "csv", 1_000_000,
     "MovieLens latest-small (2018-09): 100,836 ratings, 610 users, 9,724 movies"),
)


def _amazon(category: str) -> DatasetSpec:
    files = tuple(
        RemoteFile(name=f, urls=tuple(base + f for base in AMAZON_BASES))
        for f in (f"reviews_{category}_5.json.gz", f"meta_{category}.json.gz")
    )
    slug = "amazon-" + category.lower().replace("_", "-")
    paper = category == "Electronics"
    about = f"Amazon 2014 {category.replace('_', ' ')} 5-core reviews + meta"
    if paper:
        about += ", the DIN paper's: 1,689,188 reviews, 192,403 users, 63,001 goods, 801 categories"
    return DatasetSpec(slug, "amazon", about, AMAZON_LICENCE, files, paper=paper, options={"category": category})


def _movielens(name: str, folder: str, layout: str, size: int, about: str) -> DatasetSpec:
    zip_name = f"{folder}.zip"
    file = RemoteFile(
        name=zip_name,
        urls=tuple(base + zip_name for base in MOVIELENS_BASES),
        md5_urls=tuple(base + zip_name + ".md5" for base in MOVIELENS_BASES),
        approx_bytes=size,
    )
    return DatasetSpec(name, "movielens", about, MOVIELENS_LICENCE, (file,), paper=name == "movielens-20m",
                       options={"folder": folder, "layout": layout})


REGISTRY: dict[str, DatasetSpec] = {}
for _c in AMAZON_CATEGORIES:
    _s = _amazon(_c)
    REGISTRY[_s.name] = _s
for _row in MOVIELENS:
    REGISTRY[_row[0]] = _movielens(*_row)
REGISTRY["taobao"] = DatasetSpec(
    "taobao", "taobao",
    "Taobao UserBehavior: ~100M pv/buy/cart/fav events of 987,994 users (2017-11-25 to 12-03); local file only",
    TAOBAO_LICENCE, (RemoteFile(name="UserBehavior.csv"),), local_only=True,
)


def get(name: str) -> DatasetSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        close = [n for n in REGISTRY if name.split("-")[0] in n][:6]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise DinbenchError(
            f"unknown dataset '{name}'{hint}; `dinbench datasets` lists them all, "
            "and `dinbench import FILE --name NAME` takes your own interactions file"
        ) from None
