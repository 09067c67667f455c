"""Linked features (PROTOCOL "Linked features"): which features of two modalities measure the
same gene. Fixed at preprocessing from feature annotations only (never from cells), stored in
the preprocessed MuData, and read the same way by every method that uses them.

Storage (the data contract): ``mdata.uns["links"]["<a>-<b>"]`` for modalities ``a`` before
``b`` in ``mdata.mod`` order, a dict ``{"src": a, "tgt": b, "i": int array (features of a),
"j": int array (features of b), "w": float array (weights)}``, and
``mdata.uns["links_report"]`` with the counts (genes placed, peaks linked, proteins linked,
unmatched proteins). Read them with :func:`link_matrix`, :func:`link_counts` and
:func:`gene_space`.

Rules
-----
- RNA <-> ATAC: a peak links to a gene when it overlaps the gene body or its promoter (``promoter_bp``
  = 2 kb upstream of the transcription start: strand-aware where the strand is known, on both
  sides where it is not). Gene coordinates come from a gene annotation named in config
  (``gene_annotation``: BED ``chrom start end name strand`` or GTF, read with pyranges), else
  from the 10x ``interval`` field (Cell Ranger ARC writes it for genes too; it has no strand).
  ``weighting: glue`` adds GLUE's distance weighting: peaks within ``extend_bp`` (150 kb) of the
  gene region link with weight ``((d + 1000) / 1000) ** -0.75`` (d = distance in bp, 0 inside).
- RNA <-> ADT: a protein links to the gene that encodes it, from the documented table
  ``protein_gene.tsv`` of this package, per-dataset overrides (``protein_gene: {name: gene}``;
  ``null`` drops a protein) and same-name matches; isotype controls are left out; unmatched
  proteins are listed in the log and the report.
- Any other pair (e.g. the two halves of a gene split): features with the same name link 1:1.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Mapping
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import anndata as ad
import mudata as md
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..constants import COUNTS, MODALITY_KIND
from ..io import InputError

log = logging.getLogger(__name__)

LINKS = "links"
LINKS_REPORT = "links_report"
#: fewer genes placed than this fraction of the RNA genes (and fewer than MIN_PLACED) is an error
MIN_PLACED_FRACTION = 0.1
MIN_PLACED = 50
_INTERVAL = re.compile(r"^\s*([^:\s]+)\s*:\s*(\d+)\s*-\s*(\d+)\s*$")
_MISSING = {"", "NA", "NAN", "NONE", "."}


# --------------------------------------------------------------------------------------
# genomic coordinates
# --------------------------------------------------------------------------------------
def parse_intervals(values, names, *, where: str) -> pd.DataFrame:
    """``chr:start-end`` strings -> DataFrame (chrom, start, end) indexed by ``names``; missing
    values (NA, empty) give NaN rows; a malformed one raises naming the feature and the file."""
    chrom, start, end = [], [], []
    for name, v in zip(names, values, strict=True):
        s = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        if s.strip().upper() in _MISSING:
            chrom.append(None)
            start.append(np.nan)
            end.append(np.nan)
            continue
        m = _INTERVAL.match(s)
        if m is None or int(m.group(3)) < int(m.group(2)):
            raise InputError(
                f"{where}: feature '{name}' has a malformed genomic interval {s!r}; expected "
                "'chrom:start-end' with start <= end (e.g. 'chr1:9999-10500'); fix: correct the "
                "feature annotation, or name a gene annotation (gene_annotation: BED/GTF) instead"
            )
        chrom.append(m.group(1))
        start.append(int(m.group(2)))
        end.append(int(m.group(3)))
    return pd.DataFrame(
        {"chrom": chrom, "start": start, "end": end}, index=pd.Index(names, dtype=str)
    )


def read_gene_annotation(path: str | Path) -> pd.DataFrame:
    """Gene bodies from a BED (``chrom start end name [strand]``) or GTF file: DataFrame
    (name, chrom, start, end, strand), one row per gene name (the first occurrence)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"gene annotation {path}: not found; fix: check 'gene_annotation'")
    suffixes = "".join(path.suffixes).lower()
    try:
        if ".gtf" in suffixes or ".gff" in suffixes:
            import pyranges as pr  # the GTF reader

            gtf = pr.read_gtf(str(path)).df
            gtf = gtf[gtf["Feature"] == "gene"]
            name = gtf["gene_name"] if "gene_name" in gtf else gtf["gene_id"]
            df = pd.DataFrame({"name": name.astype(str), "chrom": gtf["Chromosome"].astype(str),
                               "start": gtf["Start"].astype(np.int64),
                               "end": gtf["End"].astype(np.int64),
                               "strand": gtf["Strand"].astype(str)})
        else:
            raw = pd.read_csv(path, sep="\t", header=None, comment="#", dtype=str)
            if raw.shape[1] < 4:
                raise InputError(
                    f"gene annotation {path}: {raw.shape[1]} columns; a BED needs chrom, start, "
                    "end, name (and strand); fix: give a 4+ column BED or a GTF"
                )
            df = pd.DataFrame({"name": raw[3], "chrom": raw[0],
                               "start": raw[1].astype(np.int64), "end": raw[2].astype(np.int64),
                               "strand": raw[5] if raw.shape[1] > 5 else
                               (raw[4] if raw.shape[1] > 4 else ".")})
    except InputError:
        raise
    except Exception as err:  # pandas / pyranges parse errors
        raise InputError(
            f"gene annotation {path}: cannot read ({type(err).__name__}: {err}); fix: give a "
            "tab-separated BED (chrom, start, end, name, strand) or a GTF"
        ) from err
    df["strand"] = df["strand"].where(df["strand"].isin(["+", "-"]), ".")
    return df.drop_duplicates("name").set_index("name")


def gene_coordinates(
    rna_var: pd.DataFrame, annotation: pd.DataFrame | None, *, where: str
) -> pd.DataFrame:
    """Coordinates (chrom, start, end, strand) of the RNA genes: from the annotation where it
    names the gene (with strand), else from the ``interval`` column (strand unknown)."""
    names = rna_var.index.astype(str)
    out = pd.DataFrame({"chrom": None, "start": np.nan, "end": np.nan, "strand": "."},
                       index=names)
    if "interval" in rna_var:
        iv = parse_intervals(rna_var["interval"].to_numpy(), names, where=where)
        out[["chrom", "start", "end"]] = iv[["chrom", "start", "end"]].to_numpy()
    if annotation is not None:
        hit = names.isin(annotation.index)
        if hit.sum() < max(1, min(MIN_PLACED, int(MIN_PLACED_FRACTION * len(names)))):
            ex_ann = annotation.index[:3].tolist()
            raise InputError(
                f"{where}: the gene annotation places only {int(hit.sum())} of {len(names)} RNA "
                f"genes (e.g. data {names[:3].tolist()} vs annotation {ex_ann}); likely cause: "
                "another naming scheme (Ensembl IDs vs gene symbols), another species or genome "
                "build; fix: name the annotation of the data's genome build and gene naming"
            )
        ann = annotation.reindex(names[hit])
        out.loc[hit, ["chrom", "start", "end", "strand"]] = ann[
            ["chrom", "start", "end", "strand"]].to_numpy()
    out["start"] = out["start"].astype(float)
    out["end"] = out["end"].astype(float)
    return out


def _gene_regions(genes: pd.DataFrame, promoter_bp: int) -> pd.DataFrame:
    """Gene body plus promoter: upstream of the TSS by strand, both sides where unknown."""
    start, end = genes["start"].to_numpy(float), genes["end"].to_numpy(float)
    plus, minus = (genes["strand"] == "+").to_numpy(), (genes["strand"] == "-").to_numpy()
    lo = np.where(minus, start, start - promoter_bp)
    hi = np.where(plus, end, end + promoter_bp)
    return pd.DataFrame({"chrom": genes["chrom"].to_numpy(), "lo": np.maximum(lo, 0), "hi": hi})


def _dist_weight(d: np.ndarray) -> np.ndarray:
    """GLUE's power-law distance decay, 1 inside the region."""
    return ((np.asarray(d, float) + 1000.0) / 1000.0) ** -0.75


def gene_peak_links(
    genes: pd.DataFrame, peaks: pd.DataFrame, *, promoter_bp: int = 2000,
    weighting: str = "none", extend_bp: int = 150_000,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(i, j, w)``: gene i and peak j overlap (gene body + promoter); with ``weighting="glue"``
    also peaks within ``extend_bp`` of the region, weighted by distance.

    Sorted-interval search per chromosome (numpy ``searchsorted``): O((genes + peaks) log peaks).
    """
    if weighting not in ("none", "glue"):
        raise ValueError(f"links.weighting={weighting!r}; valid values are ['none', 'glue']")
    reach = int(extend_bp) if weighting == "glue" else 0
    regions = _gene_regions(genes, promoter_bp)
    ii, jj, ww = [], [], []
    pk = peaks.reset_index(drop=True)
    for chrom, pidx in pk.groupby("chrom", sort=False).groups.items():
        pidx = np.asarray(pidx)
        order = np.argsort(pk.loc[pidx, "start"].to_numpy(float))
        pidx = pidx[order]
        ps = pk.loc[pidx, "start"].to_numpy(float)
        pe = pk.loc[pidx, "end"].to_numpy(float)
        max_w = float((pe - ps).max()) if len(ps) else 0.0
        gsel = np.flatnonzero(regions["chrom"].to_numpy() == chrom)
        for g in gsel:
            lo, hi = regions.at[g, "lo"] - reach, regions.at[g, "hi"] + reach
            a = np.searchsorted(ps, lo - max_w, side="left")
            b = np.searchsorted(ps, hi, side="left")
            cand = np.arange(a, b)
            cand = cand[pe[cand] > lo]
            if not len(cand):
                continue
            rlo, rhi = regions.at[g, "lo"], regions.at[g, "hi"]
            d = np.maximum(0.0, np.maximum(rlo - pe[cand], ps[cand] - rhi))
            ii.append(np.full(len(cand), g))
            jj.append(pidx[cand])
            ww.append(_dist_weight(d) if reach else np.ones(len(cand)))
    if not ii:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64),
            np.concatenate(ww).astype(np.float32))


# --------------------------------------------------------------------------------------
# proteins -> genes
# --------------------------------------------------------------------------------------
@cache
def protein_gene_table() -> dict[str, str]:
    """The package's documented protein -> gene table (``protein_gene.tsv``), normalised keys."""
    text = (files("dmmvae.data") / "protein_gene.tsv").read_text()
    rows = [ln.split("\t") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return {normalise_protein(p): g.strip() for p, g, *_ in rows[1:]}


_PREFIXES = ("ADT-", "ANTI-", "PROT-", "PROTEIN-", "HUMAN-", "MOUSE-")
_SUFFIX = re.compile(r"-(TOTALSEQ[ABC]?|TSA|TSB|TSC|ADT|PROT|PROTEIN|ANTIBODY)(-.*)?$")


def normalise_protein(name: str) -> str:
    """Upper case, separators unified to '-', ADT decorations removed (``ADT_CD4-TotalSeqB``
    -> ``CD4``; ``HLA.DR`` -> ``HLA-DR``)."""
    n = re.sub(r"[\s._]+", "-", str(name).strip().upper())
    for p in _PREFIXES:
        if n.startswith(p):
            n = n[len(p):]
    return _SUFFIX.sub("", n)


def is_isotype_control(name: str) -> bool:
    n = normalise_protein(name)
    return "ISOTYPE" in n or n.startswith(("MOUSE-IGG", "RAT-IGG")) or n.endswith("-CTRL")


def protein_gene_links(
    proteins, genes, overrides: Mapping[str, str | None] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """``(i, j, unmatched, isotypes)``: protein i is encoded by RNA gene j."""
    table = protein_gene_table()
    over = {normalise_protein(k): v for k, v in dict(overrides or {}).items()}
    gene_index: dict[str, int] = {}
    for j, g in enumerate(map(str, genes)):
        gene_index.setdefault(g.upper(), j)
    ii, jj, unmatched, isotypes = [], [], [], []
    for i, p in enumerate(map(str, proteins)):
        if is_isotype_control(p):
            isotypes.append(p)
            continue
        key = normalise_protein(p)
        if key in over:
            gene = over[key]
            if gene is None:
                continue
            cands = [gene]
        else:
            # a replicate antibody of the same protein (Hao et al.: CD3-1, CD3-2) is the protein
            base = re.sub(r"-\d+$", "", key)
            cands = [c for c in (table.get(key), key, str(p), table.get(base), base) if c]
        j = next((gene_index[c.upper()] for c in cands if c.upper() in gene_index), None)
        if j is None:
            unmatched.append(p)
        else:
            ii.append(i)
            jj.append(j)
    return np.asarray(ii, np.int64), np.asarray(jj, np.int64), unmatched, isotypes


# --------------------------------------------------------------------------------------
# the contract: add, read
# --------------------------------------------------------------------------------------
def _kind(a: ad.AnnData) -> str:
    return str(a.uns.get(MODALITY_KIND, ""))


def _store(mdata: md.MuData, a: str, b: str, i, j, w) -> None:
    mdata.uns.setdefault(LINKS, {})
    mdata.uns[LINKS][f"{a}-{b}"] = {
        "src": a, "tgt": b, "i": np.asarray(i, np.int64), "j": np.asarray(j, np.int64),
        "w": np.asarray(w, np.float32),
    }


def _subsample(entry: dict, fraction: float, seed: int) -> int:
    """Keep ``round(fraction * n)`` of a stored pair's ``n`` links in place; returns the count."""
    n = len(entry["i"])
    keep = np.sort(np.random.default_rng(seed).choice(n, int(round(fraction * n)), replace=False))
    for key in ("i", "j", "w"):
        entry[key] = entry[key][keep]
    return int(len(keep))


def add_links(
    mdata: md.MuData,
    *,
    gene_annotation: str | None = None,
    protein_gene: Mapping[str, str | None] | None = None,
    promoter_bp: int = 2000,
    weighting: str = "none",
    extend_bp: int = 150_000,
    keep_fraction: float = 1.0,
    keep_seed: int = 0,
    where: str = "preprocessed data",
) -> dict[str, Any]:
    """Compute and store every link the modalities of ``mdata`` allow; returns the counts
    (also stored in ``mdata.uns["links_report"]`` and logged). ``keep_fraction`` < 1 keeps that
    fraction of each pair's links (``round(fraction * n)``, drawn with ``keep_seed``, the same
    links whatever the split): the weak-link case, measured on a dataset with many links."""
    if not 0.0 <= float(keep_fraction) <= 1.0:
        raise ValueError(f"{where}: preprocessing.links.keep_fraction={keep_fraction!r}; fix: use "
                         "a fraction in [0, 1]")
    mods = list(mdata.mod)
    annotation = read_gene_annotation(gene_annotation) if gene_annotation else None
    report: dict[str, Any] = {}
    mdata.uns[LINKS] = {}
    for x, a in enumerate(mods):
        for b in mods[x + 1:]:
            ka, kb = _kind(mdata.mod[a]), _kind(mdata.mod[b])
            pair = f"{a}-{b}"
            if {ka, kb} == {"rna", "atac"}:
                rna, atac = (a, b) if ka == "rna" else (b, a)
                genes = gene_coordinates(mdata.mod[rna].var, annotation, where=where)
                if "interval" not in mdata.mod[atac].var:
                    log.info("%s: peaks of '%s' carry no 'interval': no gene-peak link", where,
                                atac)
                    continue
                peaks = parse_intervals(mdata.mod[atac].var["interval"].to_numpy(),
                                        mdata.mod[atac].var_names, where=where)
                placed = genes["chrom"].notna()
                gi, pj, w = gene_peak_links(genes[placed.to_numpy()], peaks,
                                            promoter_bp=promoter_bp, weighting=weighting,
                                            extend_bp=extend_bp)
                gi = np.flatnonzero(placed.to_numpy())[gi]
                i, j = (gi, pj) if rna == a else (pj, gi)
                _store(mdata, a, b, i, j, w)
                report[pair] = {"genes": int(len(genes)), "genes_placed": int(placed.sum()),
                                "genes_linked": int(len(np.unique(gi))),
                                "peaks": int(len(peaks)), "peaks_linked": int(len(np.unique(pj))),
                                "links": int(len(gi)),
                                "coordinates": "annotation" if annotation is not None
                                else "interval"}
            elif {ka, kb} == {"rna", "adt"}:
                rna, adt = (a, b) if ka == "rna" else (b, a)
                pi, gj, unmatched, isotypes = protein_gene_links(
                    mdata.mod[adt].var_names, mdata.mod[rna].var_names, protein_gene)
                i, j = (gj, pi) if rna == a else (pi, gj)
                _store(mdata, a, b, i, j, np.ones(len(pi)))
                report[pair] = {"proteins": int(mdata.mod[adt].n_vars),
                                "proteins_linked": int(len(np.unique(pi))),
                                "isotype_controls": isotypes, "unmatched": unmatched,
                                "links": int(len(pi))}
                if unmatched:
                    log.info("%s: %d proteins without a gene in '%s': %s", where, len(unmatched),
                             rna, unmatched)
            else:
                na = pd.Index(mdata.mod[a].var_names.astype(str))
                nb = pd.Index(mdata.mod[b].var_names.astype(str))
                i = np.flatnonzero(na.isin(nb))
                j = nb.get_indexer(na[i])
                _store(mdata, a, b, i, j, np.ones(len(i)))
                report[pair] = {"same_name": int(len(i)), "links": int(len(i))}
            if float(keep_fraction) < 1.0 and pair in mdata.uns[LINKS]:
                report[pair]["links_before_keep_fraction"] = report[pair]["links"]
                report[pair]["links"] = _subsample(mdata.uns[LINKS][pair], float(keep_fraction),
                                                   int(keep_seed))
            log.info("%s: links %s: %s", where, pair,
                     {k: v for k, v in report[pair].items() if not isinstance(v, list)})
    mdata.uns[LINKS_REPORT] = {k: {kk: (list(vv) if isinstance(vv, list) else vv)
                                   for kk, vv in v.items()} for k, v in report.items()}
    return report


def _entry(mdata: md.MuData, a: str, b: str) -> tuple[dict, bool]:
    links = mdata.uns.get(LINKS) or {}
    if f"{a}-{b}" in links:
        return links[f"{a}-{b}"], False
    if f"{b}-{a}" in links:
        return links[f"{b}-{a}"], True
    return {}, False


def link_matrix(mdata: md.MuData, a: str, b: str) -> sp.csr_matrix:
    """Weights of the links between the features of ``a`` (rows) and ``b`` (columns)."""
    shape = (mdata.mod[a].n_vars, mdata.mod[b].n_vars)
    entry, flipped = _entry(mdata, a, b)
    if not entry:
        return sp.csr_matrix(shape, dtype=np.float32)
    i, j = np.asarray(entry["i"], np.int64), np.asarray(entry["j"], np.int64)
    if flipped:
        i, j = j, i
    return sp.csr_matrix((np.asarray(entry["w"], np.float32), (i, j)), shape=shape)


def linked_features(mdata: md.MuData, mods: list[str]) -> dict[str, np.ndarray]:
    """Per modality, a boolean mask of the features with at least one link to another one."""
    out = {m: np.zeros(mdata.mod[m].n_vars, dtype=bool) for m in mods}
    for a, b in itertools.combinations(mods, 2):
        L = sp.csr_matrix(link_matrix(mdata, a, b))
        L.data = (L.data > 0).astype(np.float32)
        out[a] |= np.asarray(L.sum(axis=1)).ravel() > 0
        out[b] |= np.asarray(L.sum(axis=0)).ravel() > 0
    return out


def linked_view(mdata: md.MuData, kind: str) -> tuple[md.MuData, dict[str, np.ndarray]]:
    """A copy of ``mdata`` in which every modality of ``kind`` keeps only its features with at
    least one stored link (GLUE's decoded peaks: those the guidance graph links to a gene), the
    links re-indexed to the kept features; cell annotations, ``obsm`` and ``uns`` are carried
    over. Returns ``(view, {modality: kept column indices})`` for the modalities of ``kind``."""
    mods = list(mdata.mod)
    linked = linked_features(mdata, mods)
    cols = {m: np.flatnonzero(linked[m]) for m in mods
            if str(mdata.mod[m].uns.get(MODALITY_KIND, "")) == kind}
    for m, c in cols.items():
        if not len(c):
            raise InputError(
                f"{getattr(mdata, 'filename', None) or 'scenario MuData'}: modality '{m}' has no "
                "feature with a stored link, so keeping its linked features leaves none. Fix: "
                "give gene coordinates (10x 'interval' or gene_annotation) at preprocessing, or "
                "keep every feature (atac_features: all)")
    out = md.MuData({m: (mdata.mod[m][:, cols[m]] if m in cols else mdata.mod[m]).copy()
                     for m in mods})
    out.obs = mdata.obs.copy()
    for k, v in mdata.obsm.items():
        out.obsm[k] = v
    out.uns.update(dict(mdata.uns))
    new_index = {m: np.cumsum(linked[m]) - 1 for m in cols}
    links = {}
    for pair, entry in dict(mdata.uns.get(LINKS) or {}).items():
        i, j = np.asarray(entry["i"], np.int64), np.asarray(entry["j"], np.int64)
        src, tgt = str(entry["src"]), str(entry["tgt"])
        # both ends of a stored link are linked features, so every link is kept
        links[pair] = {**entry, "i": new_index[src][i] if src in cols else i,
                       "j": new_index[tgt][j] if tgt in cols else j}
    out.uns[LINKS] = links
    return out, cols


def link_counts(mdata: md.MuData) -> dict[str, Any]:
    """The link report of ``mdata`` (counts per modality pair), for run info and logs."""
    rep = mdata.uns.get(LINKS_REPORT) or {}
    return {pair: {k: (len(v) if isinstance(v, (list, np.ndarray)) and k == "unmatched" else v)
                   for k, v in dict(r).items() if k != "isotype_controls"}
            for pair, r in rep.items()}


def _counts(a: ad.AnnData) -> sp.csr_matrix:
    X = a.layers[COUNTS] if COUNTS in a.layers else a.X
    return sp.csr_matrix(X, dtype=np.float32)


def gene_space(mdata: md.MuData, mod: str, *, rna: str = "rna") -> tuple[sp.csr_matrix, list[str]]:
    """Counts of ``mod`` expressed in RNA genes: RNA itself; ATAC as gene activity (a cell's
    counts summed over each gene's linked peaks); ADT as the linked proteins, summed per gene.
    Only genes with at least one link are returned for ATAC/ADT."""
    genes = mdata.mod[rna].var_names.astype(str)
    if mod == rna:
        return _counts(mdata.mod[rna]), list(genes)
    L = link_matrix(mdata, rna, mod)  # genes x features of mod
    if L.nnz == 0:
        raise InputError(
            f"no link between '{rna}' and '{mod}' in the preprocessed data; fix: give gene "
            "coordinates (10x 'interval' or gene_annotation) or a protein->gene table entry"
        )
    L = (L > 0).astype(np.float32) if L.max() <= 1 else L
    linked = np.flatnonzero(np.asarray(L.sum(axis=1)).ravel() > 0)
    X = _counts(mdata.mod[mod]) @ L[linked].T.tocsr()
    return sp.csr_matrix(X), list(genes[linked])


__all__ = [
    "LINKS",
    "LINKS_REPORT",
    "add_links",
    "gene_coordinates",
    "gene_peak_links",
    "gene_space",
    "is_isotype_control",
    "link_counts",
    "link_matrix",
    "linked_features",
    "linked_view",
    "normalise_protein",
    "parse_intervals",
    "protein_gene_links",
    "protein_gene_table",
    "read_gene_annotation",
]
