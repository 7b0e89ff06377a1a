//! Weighted cross-products `XᵀWX` and `XᵀWz` in one blocked pass over the
//! rows, and their Cholesky solve with a conditioning guard.
//!
//! Written by hand because nalgebra's `tr_mul` on a tall n × p matrix walks
//! each pair of full columns separately (p² passes over memory) and computes
//! both triangles, and the Householder QR R's `glm.fit`/`lm.fit` use costs a
//! full n × p copy and two passes per column per iteration. Here the rows are
//! taken in blocks small enough to stay in cache, only the upper triangle is
//! summed (four accumulators per dot product, so the compiler vectorises it),
//! and the p × p system is solved by Cholesky. The block size and summation
//! order are fixed, so the result does not depend on the machine or thread
//! count. Callers fall back to QR when [`solve_spd`] reports the system is
//! too ill-conditioned for the normal equations.

use nalgebra::{DMatrix, DVector};

/// Rows per block: a block of a 20-column design is 40 KiB.
const BLOCK: usize = 256;

/// Lanes per accumulator: two f64 fill the baseline x86-64 (SSE2) register.
const LANES: usize = 2;

/// `acc[j][k] += Σ_i a[j][i] b[k][i]` for two `a` columns and four `b`
/// columns over one block: eight sums kept in registers, six loads per eight
/// multiply-adds (a dot product at a time needs two per one). The lanes are
/// added in a fixed order at the end.
#[inline]
fn tile(a: [&[f64]; 2], b: [&[f64]; 4]) -> [[f64; 4]; 2] {
    let len = a[0].len();
    let mut acc = [[[0.0f64; LANES]; 4]; 2];
    let whole = len / LANES * LANES;
    let mut i = 0;
    while i < whole {
        for (jj, aj) in a.iter().enumerate() {
            let wa = &aj[i..i + LANES];
            for (kk, bk) in b.iter().enumerate() {
                let xb = &bk[i..i + LANES];
                for l in 0..LANES {
                    acc[jj][kk][l] += wa[l] * xb[l];
                }
            }
        }
        i += LANES;
    }
    let mut out = [[0.0f64; 4]; 2];
    for jj in 0..2 {
        for kk in 0..4 {
            let mut s = acc[jj][kk].iter().sum::<f64>();
            for t in whole..len {
                s += a[jj][t] * b[kk][t];
            }
            out[jj][kk] = s;
        }
    }
    out
}

/// `XᵀWX` and, if `z` is given, `XᵀWz`, with `W = diag(w)` (all ones when
/// `w` is `None`).
pub(crate) fn weighted_gram(x: &DMatrix<f64>, w: Option<&[f64]>, z: Option<&[f64]>) -> (DMatrix<f64>, DVector<f64>) {
    Rows::once(x).gram(w, z)
}

/// A design prepared for repeated cross-products with changing weights (one
/// per IRLS step). Designs of treatment and factor dummies are mostly zeros
/// (a participant has one level of each factor), so when fewer than half the
/// entries are non-zero the rows are kept as their non-zero entries and each
/// row adds only the products of those; otherwise the dense blocked pass is
/// used. Either way each entry is summed over the rows in row order.
pub(crate) enum Rows<'a> {
    /// Compressed rows: entries `start[i]..start[i + 1]` of `col`/`val` are
    /// row i's non-zeros, in column order; `patterns`, the rows' distinct
    /// patterns when there are few of them.
    Sparse {
        p: usize,
        start: Vec<usize>,
        col: Vec<usize>,
        val: Vec<f64>,
        patterns: Option<Patterns>,
        /// When the rows are not few but their indicator parts are.
        indicators: Option<Box<Indicators>>,
    },
    /// The matrix itself.
    Dense(&'a DMatrix<f64>),
}

impl<'a> Rows<'a> {
    /// The rows prepared for repeated cross-products (an iterative fit): with
    /// their [`Patterns`] or [`Indicators`] found, when they have them.
    pub(crate) fn new(x: &'a DMatrix<f64>) -> Rows<'a> {
        Rows::prepare(x, true)
    }

    /// The rows prepared for one cross-product (a closed form): summed row by
    /// row, without looking for shared patterns.
    pub(crate) fn once(x: &'a DMatrix<f64>) -> Rows<'a> {
        Rows::prepare(x, false)
    }

    fn prepare(x: &'a DMatrix<f64>, group: bool) -> Rows<'a> {
        let (n, p) = x.shape();
        // Two passes down the columns (contiguous in memory): count each row's
        // non-zeros (and check that every entry is finite), then place them;
        // columns are visited in order, so each row's entries come out in
        // column order. A dense matrix is known after the first pass.
        let data = x.as_slice();
        let mut start = vec![0usize; n + 1];
        let mut finite = true;
        for j in 0..p {
            for (i, v) in data[j * n..(j + 1) * n].iter().enumerate() {
                start[i + 1] += usize::from(*v != 0.0);
                finite &= v.is_finite();
            }
        }
        let nonzero: usize = start.iter().sum();
        if 2 * nonzero >= n * p || !finite {
            return Rows::Dense(x);
        }
        for i in 0..n {
            start[i + 1] += start[i];
        }
        let (mut col, mut val) = (vec![0usize; nonzero], vec![0.0f64; nonzero]);
        let mut next = start.clone();
        for j in 0..p {
            for (i, &v) in data[j * n..(j + 1) * n].iter().enumerate() {
                if v != 0.0 {
                    col[next[i]] = j;
                    val[next[i]] = v;
                    next[i] += 1;
                }
            }
        }
        let patterns = if group { Patterns::of(&start, &col, &val) } else { None };
        let indicators =
            if group && patterns.is_none() { Indicators::of(p, &start, &col, &val).map(Box::new) } else { None };
        Rows::Sparse { p, start, col, val, patterns, indicators }
    }

    /// The rows' distinct patterns, if the design is sparse and has at most
    /// one distinct row per [`MIN_COPIES`] rows.
    pub(crate) fn patterns(&self) -> Option<&Patterns> {
        match self {
            Rows::Sparse { patterns, .. } => patterns.as_ref(),
            Rows::Dense(_) => None,
        }
    }

    /// `X β`, each row summed in column order.
    pub(crate) fn mul(&self, beta: &DVector<f64>) -> Vec<f64> {
        match self {
            Rows::Dense(x) => (*x * beta).as_slice().to_vec(),
            Rows::Sparse { indicators: Some(ind), .. } if let Some(eta) = ind.mul(beta) => eta,
            Rows::Sparse { start, col, val, .. } => (0..start.len() - 1)
                .map(|i| (start[i]..start[i + 1]).fold(0.0, |acc, e| acc + val[e] * beta[col[e]]))
                .collect(),
        }
    }

    /// `XᵀWX` and, if `z` is given, `XᵀWz`.
    pub(crate) fn gram(&self, w: Option<&[f64]>, z: Option<&[f64]>) -> (DMatrix<f64>, DVector<f64>) {
        match self {
            Rows::Dense(x) => {
                let n = x.nrows();
                let data = x.as_slice();
                let cols: Vec<&[f64]> = (0..x.ncols()).map(|j| &data[j * n..(j + 1) * n]).collect();
                gram_of_columns(&cols, n, w, z)
            }
            Rows::Sparse { p, indicators: Some(ind), .. } => ind.gram(*p, w, z),
            Rows::Sparse { p, start, col, val, .. } => {
                let p = *p;
                let mut a = vec![0.0f64; p * p];
                let mut b = vec![0.0f64; p];
                for i in 0..start.len() - 1 {
                    let (lo, hi) = (start[i], start[i + 1]);
                    let wi = w.map_or(1.0, |w| w[i]);
                    for e in lo..hi {
                        let (ce, ve) = (col[e], val[e] * wi);
                        let row = &mut a[ce * p..ce * p + p];
                        for f in e..hi {
                            row[col[f]] += ve * val[f];
                        }
                        if let Some(z) = z {
                            b[ce] += ve * z[i];
                        }
                    }
                }
                symmetric(p, &a, b)
            }
        }
    }
}

/// Fewest rows per distinct row for [`Rows::patterns`] to be kept: with
/// fewer copies grouping would save little.
pub(crate) const MIN_COPIES: usize = 4;

/// Which rows of a design are equal. A design of only the treatment and
/// factor dummies has at most (2 × the product of the factors' levels)
/// distinct rows however many participants it has, so a model fitted by
/// rows' sums (cross-products, likelihoods) can be fitted on the distinct
/// rows with their counts as weights.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Patterns {
    /// Row i equals row `first[of[i]]`.
    pub(crate) of: Vec<u32>,
    /// Each pattern's first row, in row order.
    pub(crate) first: Vec<usize>,
}

impl Patterns {
    /// The patterns of compressed rows, or `None` if there are more than one
    /// per [`MIN_COPIES`] rows.
    fn of(start: &[usize], col: &[usize], val: &[f64]) -> Option<Patterns> {
        let n = start.len() - 1;
        let limit = n / MIN_COPIES;
        let mut index: rustc_hash::FxHashMap<RowKey<'_>, u32> = rustc_hash::FxHashMap::default();
        let (mut of, mut first) = (Vec::with_capacity(n), Vec::new());
        for i in 0..n {
            let key = RowKey(&col[start[i]..start[i + 1]], &val[start[i]..start[i + 1]]);
            let next = first.len() as u32;
            let k = *index.entry(key).or_insert(next);
            if k == next {
                if first.len() >= limit {
                    return None;
                }
                first.push(i);
            }
            of.push(k);
        }
        Some(Patterns { of, first })
    }
}

/// A design's rows split into their indicator part (the entries of columns
/// whose every non-zero is 1: the intercept, treatment and factor dummies)
/// and the rest (numeric covariates). With few distinct indicator parts,
/// `XᵀWX` sums per row only the products involving the rest; the indicator
/// block and the indicator × rest block are summed per pattern from the
/// pattern's total weight and weighted rest sums (as `Σ_{i∈g} w_i x_ij x_ik =
/// W_g` for two indicators j, k of pattern g, and `Σ_{i∈g} w_i x_ic` for an
/// indicator and a covariate c).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Indicators {
    /// Row i's indicator pattern.
    of: Vec<u32>,
    /// Each pattern's indicator columns, in column order.
    columns: Vec<Vec<usize>>,
    /// Row i's other entries are `rest_start[i]..rest_start[i + 1]` of
    /// `rest_col`/`rest_val`, in column order.
    rest_start: Vec<usize>,
    rest_col: Vec<usize>,
    rest_val: Vec<f64>,
    /// The columns of the other entries, in order, and row i's values in them
    /// (zeros included) as `rest[i * r..(i + 1) * r]`, `r` their number: for
    /// [`Indicators::mul`], a short loop over consecutive values.
    rest_cols: Vec<usize>,
    rest: Vec<f64>,
    /// Whether every indicator column comes before every other column, so
    /// that a row's `x β`, summed in column order, begins with its pattern's
    /// indicator sum ([`Indicators::mul`]).
    indicators_first: bool,
}

impl Indicators {
    /// The split of compressed rows, or `None` if no column is an indicator
    /// or there are more indicator patterns than one per [`MIN_COPIES`] rows.
    fn of(p: usize, start: &[usize], col: &[usize], val: &[f64]) -> Option<Indicators> {
        let n = start.len() - 1;
        let mut indicator = vec![true; p];
        for (&c, &v) in col.iter().zip(val) {
            indicator[c] &= v == 1.0;
        }
        if !indicator.iter().any(|&b| b) {
            return None;
        }
        let mut index: rustc_hash::FxHashMap<Vec<usize>, u32> = rustc_hash::FxHashMap::default();
        let mut columns: Vec<Vec<usize>> = Vec::new();
        let mut of = Vec::with_capacity(n);
        let (mut rest_start, mut rest_col, mut rest_val) = (Vec::with_capacity(n + 1), Vec::new(), Vec::new());
        rest_start.push(0);
        let mut part: Vec<usize> = Vec::new();
        for i in 0..n {
            part.clear();
            for e in start[i]..start[i + 1] {
                if indicator[col[e]] {
                    part.push(col[e]);
                } else {
                    rest_col.push(col[e]);
                    rest_val.push(val[e]);
                }
            }
            rest_start.push(rest_col.len());
            let g = match index.get(part.as_slice()) {
                Some(&g) => g,
                None => {
                    if columns.len() >= n / MIN_COPIES {
                        return None;
                    }
                    let g = columns.len() as u32;
                    index.insert(part.clone(), g);
                    columns.push(part.clone());
                    g
                }
            };
            of.push(g);
        }
        let rest_cols: Vec<usize> = (0..p).filter(|&c| !indicator[c]).collect();
        let r = rest_cols.len();
        let mut place = vec![0; p];
        for (k, &c) in rest_cols.iter().enumerate() {
            place[c] = k;
        }
        let mut rest = vec![0.0f64; n * r];
        for i in 0..n {
            for e in rest_start[i]..rest_start[i + 1] {
                rest[i * r + place[rest_col[e]]] = rest_val[e];
            }
        }
        let last_indicator = (0..p).rfind(|&c| indicator[c]);
        let indicators_first = match (last_indicator, rest_cols.first()) {
            (Some(l), Some(&f)) => l < f,
            _ => true,
        };
        Some(Indicators { of, columns, rest_start, rest_col, rest_val, rest_cols, rest, indicators_first })
    }

    /// `X β` bit for bit as the compressed rows' sum in column order gives
    /// it, when the indicator columns come first: each pattern's indicator
    /// sum once (`1 × β_j` is `β_j`), then each row's other entries; `None`
    /// otherwise. A model with covariates spends most of `X β` on its
    /// indicators, which are the same sum for every row of a pattern.
    fn mul(&self, beta: &DVector<f64>) -> Option<Vec<f64>> {
        if !self.indicators_first {
            return None;
        }
        let prefix: Vec<f64> =
            self.columns.iter().map(|cols| cols.iter().fold(0.0, |acc, &j| acc + 1.0 * beta[j])).collect();
        let rb: Vec<f64> = self.rest_cols.iter().map(|&c| beta[c]).collect();
        let r = rb.len();
        if r == 0 {
            return Some(self.of.iter().map(|&g| prefix[g as usize]).collect());
        }
        Some(
            self.of
                .iter()
                .zip(self.rest.chunks_exact(r))
                .map(|(&g, xs)| {
                    let mut acc = prefix[g as usize];
                    // The zeros are skipped as the compressed rows skip them
                    // (a zero times an infinite coefficient is not zero).
                    for (&x, &b) in xs.iter().zip(&rb) {
                        if x != 0.0 {
                            acc += x * b;
                        }
                    }
                    acc
                })
                .collect(),
        )
    }

    /// `XᵀWX` and, if `z` is given, `XᵀWz`.
    fn gram(&self, p: usize, w: Option<&[f64]>, z: Option<&[f64]>) -> (DMatrix<f64>, DVector<f64>) {
        let groups = self.columns.len();
        let mut a = vec![0.0f64; p * p];
        let mut b = vec![0.0f64; p];
        // Per pattern: total weight, weighted z, weighted rest columns.
        let (mut wg, mut zg, mut sg) = (vec![0.0f64; groups], vec![0.0f64; groups], vec![0.0f64; groups * p]);
        // With finite weights and z, the covariates' sums from their dense
        // copy, with as many accumulators as there are covariates: a zero
        // adds an exact zero to each sum it enters (products of finite
        // values), and no sum is ever −0 (each starts at +0 and a sum of
        // non-zeros is never −0), so each sum is bit for bit the sum over the
        // non-zero entries below.
        let finite = w.is_none_or(super::all_finite) && z.is_none_or(super::all_finite);
        let dense = finite
            && match self.rest_cols.len() {
                1 => self.dense_sums::<1>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                2 => self.dense_sums::<2>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                3 => self.dense_sums::<3>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                4 => self.dense_sums::<4>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                5 => self.dense_sums::<5>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                6 => self.dense_sums::<6>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                7 => self.dense_sums::<7>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                8 => self.dense_sums::<8>(p, w, z, (&mut wg, &mut zg, &mut sg), (&mut a, &mut b)),
                _ => false,
            };
        if !dense {
            let (start, col, val) = (&self.rest_start, &self.rest_col, &self.rest_val);
            for (i, &g) in self.of.iter().enumerate() {
                let g = g as usize;
                let wi = w.map_or(1.0, |w| w[i]);
                wg[g] += wi;
                if let Some(z) = z {
                    zg[g] += wi * z[i];
                }
                let (lo, hi) = (start[i], start[i + 1]);
                let s = &mut sg[g * p..g * p + p];
                for e in lo..hi {
                    let (ce, ve) = (col[e], val[e] * wi);
                    s[ce] += ve;
                    let row = &mut a[ce * p..ce * p + p];
                    for f in e..hi {
                        row[col[f]] += ve * val[f];
                    }
                    if let Some(z) = z {
                        b[ce] += ve * z[i];
                    }
                }
            }
        }
        for (g, cols) in self.columns.iter().enumerate() {
            let s = &sg[g * p..g * p + p];
            for (x, &j) in cols.iter().enumerate() {
                for &k in &cols[x..] {
                    a[j * p + k] += wg[g];
                }
                if z.is_some() {
                    b[j] += zg[g];
                }
                for (c, &v) in s.iter().enumerate() {
                    // Zero for every indicator column (never summed into).
                    if v != 0.0 {
                        let (lo, hi) = if j < c { (j, c) } else { (c, j) };
                        a[lo * p + hi] += v;
                    }
                }
            }
        }
        symmetric(p, &a, b)
    }

    /// The row-by-row part of [`Indicators::gram`] for `R` covariates, from
    /// their dense copy: each pattern's total weight, weighted z and weighted
    /// covariates into `wg`, `zg`, `sg` (indexed by column), the covariates'
    /// cross-products and their products with z into `a` and `b`. A loop of
    /// fixed length keeps the sums in registers. Returns true.
    fn dense_sums<const R: usize>(
        &self,
        p: usize,
        w: Option<&[f64]>,
        z: Option<&[f64]>,
        (wg, zg, sg): (&mut [f64], &mut [f64], &mut [f64]),
        (a, b): (&mut [f64], &mut [f64]),
    ) -> bool {
        let groups = wg.len();
        let mut s = vec![[0.0f64; R]; groups];
        let mut rr = [[0.0f64; R]; R];
        let mut rz = [0.0f64; R];
        for (i, (&g, xs)) in self.of.iter().zip(self.rest.chunks_exact(R)).enumerate() {
            let g = g as usize;
            let wi = w.map_or(1.0, |w| w[i]);
            wg[g] += wi;
            let mut ve = [0.0f64; R];
            for e in 0..R {
                ve[e] = xs[e] * wi;
                s[g][e] += ve[e];
            }
            for e in 0..R {
                for f in e..R {
                    rr[e][f] += ve[e] * xs[f];
                }
            }
            if let Some(z) = z {
                let zi = z[i];
                zg[g] += wi * zi;
                for e in 0..R {
                    rz[e] += ve[e] * zi;
                }
            }
        }
        let cols = &self.rest_cols;
        for (g, sums) in s.iter().enumerate() {
            for e in 0..R {
                sg[g * p + cols[e]] = sums[e];
            }
        }
        for e in 0..R {
            for f in e..R {
                a[cols[e] * p + cols[f]] = rr[e][f];
            }
            if z.is_some() {
                b[cols[e]] = rz[e];
            }
        }
        true
    }
}

/// A compressed row as a hash key: its columns and the bits of its values
/// (bitwise equality, so that no two rows merge unless they are identical).
#[derive(Clone, Copy)]
struct RowKey<'a>(&'a [usize], &'a [f64]);

impl PartialEq for RowKey<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.1.iter().zip(other.1).all(|(a, b)| a.to_bits() == b.to_bits())
    }
}

impl Eq for RowKey<'_> {}

impl std::hash::Hash for RowKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
        for v in self.1 {
            h.write_u64(v.to_bits());
        }
    }
}

/// [`weighted_gram`] of columns given as slices of length `n`.
pub(crate) fn gram_of_columns(
    cols: &[&[f64]],
    n: usize,
    w: Option<&[f64]>,
    z: Option<&[f64]>,
) -> (DMatrix<f64>, DVector<f64>) {
    let p = cols.len();
    let mut a = vec![0.0f64; p * p];
    let mut b = vec![0.0f64; p];
    let mut wx = vec![0.0f64; BLOCK * p];
    let zeros = vec![0.0f64; BLOCK];
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let col = |j: usize| &cols[j][start..start + len];
        for j in 0..p {
            let dst = &mut wx[j * BLOCK..j * BLOCK + len];
            match w {
                Some(w) => {
                    for ((d, &v), &wi) in dst.iter_mut().zip(col(j)).zip(&w[start..start + len]) {
                        *d = v * wi;
                    }
                }
                None => dst.copy_from_slice(col(j)),
            }
        }
        // The right-hand columns: X's, then z.
        let right = |k: usize| -> &[f64] {
            match z {
                _ if k < p => col(k),
                Some(z) if k == p => &z[start..start + len],
                _ => &zeros[..len],
            }
        };
        let q = if z.is_some() { p + 1 } else { p };
        let left = |j: usize| if j < p { &wx[j * BLOCK..j * BLOCK + len] } else { &zeros[..len] };
        for j0 in (0..p).step_by(2) {
            for k0 in (j0..q).step_by(4) {
                let b4 = [right(k0), right(k0 + 1), right(k0 + 2), right(k0 + 3)];
                let out = tile([left(j0), left(j0 + 1)], b4);
                for (jj, row) in out.iter().enumerate() {
                    let j = j0 + jj;
                    for (kk, &v) in row.iter().enumerate() {
                        let k = k0 + kk;
                        if j < p && k >= j && k < q {
                            if k < p {
                                a[j * p + k] += v;
                            } else {
                                b[j] += v;
                            }
                        }
                    }
                }
            }
        }
        start += len;
    }
    symmetric(p, &a, b)
}

/// The full symmetric matrix from the upper triangle accumulated row-major in
/// `a` (p × p), with the right-hand side `b`.
fn symmetric(p: usize, a: &[f64], b: Vec<f64>) -> (DMatrix<f64>, DVector<f64>) {
    let mut g = DMatrix::zeros(p, p);
    for j in 0..p {
        for k in j..p {
            g[(j, k)] = a[j * p + k];
            g[(k, j)] = a[j * p + k];
        }
    }
    (g, DVector::from_vec(b))
}

/// Largest condition number (of the unit-diagonal scaling of the system,
/// estimated from its Cholesky factor) at which the normal equations are
/// used; beyond it callers use QR on the full matrix, as R does.
const MAX_CONDITION: f64 = 1e8;

/// Cholesky factor of `a` after scaling it to unit diagonal, with the
/// scaling, or `None` if `a` is not positive definite or looks too
/// ill-conditioned for the normal equations.
fn factor(a: &DMatrix<f64>) -> Option<(nalgebra::Cholesky<f64, nalgebra::Dyn>, DVector<f64>)> {
    let p = a.nrows();
    let d = DVector::from_iterator(p, (0..p).map(|j| a[(j, j)]));
    if d.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
        return None;
    }
    let s = d.map(|v| 1.0 / v.sqrt());
    let scaled = DMatrix::from_fn(p, p, |i, j| a[(i, j)] * s[i] * s[j]);
    let c = scaled.cholesky()?;
    let l = c.l_dirty();
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for j in 0..p {
        let v = l[(j, j)];
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let cond = (hi / lo).powi(2);
    (cond.is_finite() && cond <= MAX_CONDITION).then_some((c, s))
}

/// Solves `A x = b` for a symmetric positive definite `A`, or `None` (not
/// positive definite, or too ill-conditioned: use QR instead).
pub(crate) fn solve_spd(a: &DMatrix<f64>, b: &DVector<f64>) -> Option<DVector<f64>> {
    let (c, s) = factor(a)?;
    let rhs = b.component_mul(&s);
    let y = c.solve(&rhs);
    let x = y.component_mul(&s);
    super::all_finite(x.as_slice()).then_some(x)
}

/// `A⁻¹` for a symmetric positive definite `A`, or `None` as [`solve_spd`].
pub(crate) fn inverse_spd(a: &DMatrix<f64>) -> Option<DMatrix<f64>> {
    let (c, s) = factor(a)?;
    let inv = c.inverse();
    let p = a.nrows();
    let out = DMatrix::from_fn(p, p, |i, j| inv[(i, j)] * s[i] * s[j]);
    super::all_finite(out.as_slice()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gram_matches_the_dense_product() {
        let n = 1000;
        let x = DMatrix::from_fn(n, 5, |i, j| ((i * 7 + j * 13) % 11) as f64 - 3.0 + j as f64 * 0.25);
        let w: Vec<f64> = (0..n).map(|i| 0.5 + (i % 3) as f64).collect();
        let z: Vec<f64> = (0..n).map(|i| (i % 5) as f64).collect();
        let (g, b) = weighted_gram(&x, Some(&w), Some(&z));
        let wm = DMatrix::from_diagonal(&DVector::from_vec(w.clone()));
        let g0 = x.transpose() * &wm * &x;
        let b0 = x.transpose() * &wm * DVector::from_vec(z);
        assert!((g - g0).amax() < 1e-9);
        assert!((b - b0).amax() < 1e-9);
    }

    #[test]
    fn sparse_rows_match_the_dense_product() {
        let n = 700;
        let x = DMatrix::from_fn(n, 6, |i, j| match j {
            0 => 1.0,
            1..=3 => f64::from(u8::from(i % 4 == j)),
            4 => f64::from(u8::from(i % 3 == 0)),
            _ => (i % 7) as f64 * 0.5,
        });
        assert!(matches!(Rows::new(&x), Rows::Sparse { .. }));
        let w: Vec<f64> = (0..n).map(|i| 0.25 + (i % 5) as f64).collect();
        let z: Vec<f64> = (0..n).map(|i| (i % 9) as f64 - 4.0).collect();
        let (g, b) = Rows::new(&x).gram(Some(&w), Some(&z));
        let wm = DMatrix::from_diagonal(&DVector::from_vec(w.clone()));
        assert!((g - x.transpose() * &wm * &x).amax() < 1e-9);
        assert!((b - x.transpose() * &wm * DVector::from_vec(z)).amax() < 1e-9);
        let beta = DVector::from_fn(6, |j, _| j as f64 - 2.5);
        let eta = Rows::new(&x).mul(&beta);
        assert!((DVector::from_vec(eta) - &x * &beta).amax() < 1e-12);
    }

    #[test]
    fn rows_split_into_indicators_and_covariates_match_the_dense_product() {
        let n = 900;
        // Intercept, a treatment and two factors' dummies, two covariates (one
        // sometimes zero), a third factor's dummies, and a dummy column coded 2
        // (not an indicator).
        let x = DMatrix::from_fn(n, 13, |i, j| match j {
            0 => 1.0,
            1 => f64::from(u8::from(i % 2 == 0)),
            2 | 3 => f64::from(u8::from(i % 3 == j - 1)),
            4 => f64::from(u8::from(i % 5 == 0)),
            5 => (i as f64).sqrt() - 10.0,
            6 => ((i % 11) as f64 - 5.0) * 0.3,
            7..=11 => f64::from(u8::from(i % 6 == j - 6)),
            _ => 2.0 * f64::from(u8::from(i % 7 == 0)),
        });
        let rows = Rows::new(&x);
        let Rows::Sparse { patterns, indicators, .. } = &rows else { panic!("sparse rows expected") };
        assert!(patterns.is_none() && indicators.is_some());
        let w: Vec<f64> = (0..n).map(|i| 0.25 + (i % 5) as f64).collect();
        let z: Vec<f64> = (0..n).map(|i| (i % 9) as f64 - 4.0).collect();
        let wm = DMatrix::from_diagonal(&DVector::from_vec(w.clone()));
        let (g, b) = rows.gram(Some(&w), Some(&z));
        let g0 = x.transpose() * &wm * &x;
        assert!((&g - &g0).amax() < 1e-9 * g0.amax(), "{}", (&g - &g0).amax());
        assert!((b - x.transpose() * &wm * DVector::from_vec(z)).amax() < 1e-9 * g0.amax());
        let (g, _) = rows.gram(None, None);
        assert!((g - x.transpose() * &x).amax() < 1e-9 * g0.amax());
    }

    /// `X β` of rows split into indicators and the rest is bit for bit the
    /// compressed rows', with covariates that are sometimes zero, indicator
    /// columns before or among the others, and coefficients that are not all
    /// finite.
    #[test]
    fn split_rows_multiply_bit_for_bit_as_compressed_rows() {
        let n = 1200;
        let last = |i: usize, j: usize| match j {
            0 => 1.0,
            1 => f64::from(u8::from(i % 2 == 0)),
            2..=9 => f64::from(u8::from(i % 9 == j - 1)),
            10 => f64::from(u8::from(i % 3 == 0)),
            11 => ((i * 37) % 23) as f64 * 0.37 - 2.0,
            12 => ((i % 5) as f64 - 2.0) * 1.3,
            _ => (i as f64).sqrt() * f64::from(u8::from(i % 4 != 1)),
        };
        let among = |i: usize, j: usize| match j {
            2 => ((i * 37) % 23) as f64 * 0.37 - 2.0,
            _ => last(i, if j < 2 { j } else { j - 1 }),
        };
        let same = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
        };
        for (layout, x) in
            [("indicators first", DMatrix::from_fn(n, 14, last)), ("among", DMatrix::from_fn(n, 15, among))]
        {
            let split = Rows::new(&x);
            let Rows::Sparse { patterns: None, indicators: Some(ind), .. } = &split else {
                panic!("{layout}: split rows expected")
            };
            assert_eq!(ind.indicators_first, layout == "indicators first");
            let whole = Rows::once(&x);
            let Rows::Sparse { indicators: None, .. } = &whole else { panic!("{layout}: compressed rows expected") };
            for beta in [
                DVector::from_fn(x.ncols(), |j, _| (j as f64 - 3.3) * 0.7),
                DVector::from_fn(x.ncols(), |j, _| if j == 12 { f64::INFINITY } else { 0.1 * j as f64 }),
                DVector::from_fn(x.ncols(), |j, _| if j == 3 { f64::NAN } else { 1e300 * (j as f64 - 6.5) }),
            ] {
                assert!(same(&split.mul(&beta), &whole.mul(&beta)), "{layout}: X β");
            }
        }
    }

    /// The split cross-product summed over each row's non-zero covariate
    /// entries alone (the path taken with non-finite weights), from the
    /// compressed rows.
    fn split_gram_over_non_zeros(
        whole: &Rows<'_>,
        ind: &Indicators,
        w: Option<&[f64]>,
        z: Option<&[f64]>,
    ) -> (DMatrix<f64>, DVector<f64>) {
        let Rows::Sparse { p, start, col, val, .. } = whole else { panic!("compressed rows expected") };
        let p = *p;
        let groups = ind.columns.len();
        let mut a = vec![0.0f64; p * p];
        let mut b = vec![0.0f64; p];
        let (mut wg, mut zg, mut sg) = (vec![0.0f64; groups], vec![0.0f64; groups], vec![0.0f64; groups * p]);
        for (i, &g) in ind.of.iter().enumerate() {
            let g = g as usize;
            let wi = w.map_or(1.0, |w| w[i]);
            wg[g] += wi;
            if let Some(z) = z {
                zg[g] += wi * z[i];
            }
            let entries: Vec<usize> = (start[i]..start[i + 1]).filter(|&e| ind.rest_cols.contains(&col[e])).collect();
            for (x, &e) in entries.iter().enumerate() {
                let (ce, ve) = (col[e], val[e] * wi);
                sg[g * p + ce] += ve;
                for &f in &entries[x..] {
                    a[ce * p + col[f]] += ve * val[f];
                }
                if let Some(z) = z {
                    b[ce] += ve * z[i];
                }
            }
        }
        for (g, cols) in ind.columns.iter().enumerate() {
            for (x, &j) in cols.iter().enumerate() {
                for &k in &cols[x..] {
                    a[j * p + k] += wg[g];
                }
                if z.is_some() {
                    b[j] += zg[g];
                }
                for c in 0..p {
                    let v = sg[g * p + c];
                    if v != 0.0 {
                        let (lo, hi) = if j < c { (j, c) } else { (c, j) };
                        a[lo * p + hi] += v;
                    }
                }
            }
        }
        symmetric(p, &a, b)
    }

    /// The covariates' sums from their dense copy are bit for bit the sums
    /// over their non-zero entries, for one to nine covariates (nine takes
    /// the sparse path), some often zero, with and without weights and z, and
    /// with weights that are not all finite.
    #[test]
    fn split_rows_sum_bit_for_bit_as_over_their_non_zeros() {
        let n = 1500;
        for covariates in 1..=9 {
            let p = 12 + covariates;
            let x = DMatrix::from_fn(n, p, |i, j| match j {
                0 => 1.0,
                1 => f64::from(u8::from(i % 2 == 0)),
                2..=9 => f64::from(u8::from(i % 9 == j - 1)),
                10 | 11 => f64::from(u8::from(i % 4 == j - 9)),
                _ => {
                    let c = j - 12;
                    let v = ((i * (31 + 7 * c)) % (19 + c)) as f64 * 0.37 - 1.5 * c as f64;
                    if (i + c) % 5 == 0 { 0.0 } else { v + (i as f64).sqrt() * 1e-3 }
                }
            });
            let split = Rows::new(&x);
            let Rows::Sparse { patterns: None, indicators: Some(ind), .. } = &split else {
                panic!("{covariates} covariates: split rows expected")
            };
            assert_eq!(ind.rest_cols.len(), covariates);
            let whole = Rows::once(&x);
            let w: Vec<f64> = (0..n).map(|i| 0.125 + ((i * 7) % 13) as f64 / 7.0).collect();
            let z: Vec<f64> = (0..n).map(|i| ((i * 11) % 17) as f64 / 3.0 - 2.5).collect();
            let mut bad = w.clone();
            bad[17] = f64::NAN;
            let same = |a: &[f64], b: &[f64]| {
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
            };
            for (w, z) in
                [(Some(&w[..]), Some(&z[..])), (Some(&w[..]), None), (None, None), (Some(&bad[..]), Some(&z[..]))]
            {
                let (g1, b1) = split.gram(w, z);
                let (g2, b2) = split_gram_over_non_zeros(&whole, ind, w, z);
                assert!(same(g1.as_slice(), g2.as_slice()), "{covariates} covariates: XᵀWX");
                assert!(same(b1.as_slice(), b2.as_slice()), "{covariates} covariates: XᵀWz");
            }
        }
    }

    #[test]
    fn ill_conditioned_systems_are_refused() {
        let a = DMatrix::from_row_slice(2, 2, &[1.0, 1.0 - 1e-12, 1.0 - 1e-12, 1.0]);
        assert!(solve_spd(&a, &DVector::from_vec(vec![1.0, 1.0])).is_none());
        let a = DMatrix::from_row_slice(2, 2, &[4.0, 1.0, 1.0, 3.0]);
        let x = solve_spd(&a, &DVector::from_vec(vec![1.0, 2.0])).unwrap();
        assert!((&a * &x - DVector::from_vec(vec![1.0, 2.0])).amax() < 1e-12);
        let inv = inverse_spd(&a).unwrap();
        assert!((&a * inv - DMatrix::identity(2, 2)).amax() < 1e-12);
    }
}
