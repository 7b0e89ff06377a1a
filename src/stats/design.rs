//! Design matrices for regression adjustment: a treatment indicator, the
//! stratification factors and baseline covariates.
//!
//! Coding follows R's `model.matrix` with treatment contrasts: an intercept,
//! then `treated`, then one dummy column per non-reference level of each
//! factor (the first level is the reference), then numeric covariates.
//! Column names are R's (`sitedoncaster`). Levels with no observations among
//! the analysed rows are dropped, so the reference is the first *observed*
//! level. Columns that are linear combinations of earlier columns are
//! detected (as `lm`/`glm` do, reporting such coefficients as `NA`) and left
//! out of the fit; their names are reported in `aliased`.
//!
//! EMA (2015) and Kahan & Morris (2012): adjust for the stratification
//! factors as used at randomisation. Never pass post-randomisation variables.

use super::gram::gram_of_columns;
use super::{Result, StatsError, check_len};
use nalgebra::DMatrix;

/// A categorical baseline variable (e.g. a stratification factor).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Factor {
    /// Variable name, used as the prefix of the dummy column names.
    pub name: String,
    /// Level labels; the first is the reference.
    pub levels: Vec<String>,
    /// Per participant: index into `levels`, or `None` when missing.
    pub codes: Vec<Option<usize>>,
}

impl Factor {
    /// A factor from labels with levels in sorted order, as R's `factor()`
    /// orders character data (byte order; equal to R's for ASCII labels in
    /// one case).
    pub fn from_labels<S: AsRef<str>>(name: &str, labels: &[Option<S>]) -> Factor {
        // The distinct labels first (a factor has few, against one label per
        // participant), then those sorted.
        let distinct: rustc_hash::FxHashSet<&str> = labels.iter().flatten().map(|s| s.as_ref()).collect();
        let mut levels: Vec<&str> = distinct.into_iter().collect();
        levels.sort_unstable();
        let codes = labels.iter().map(|l| l.as_ref().map(|s| levels.binary_search(&s.as_ref()).unwrap_or(0))).collect();
        Factor { name: name.to_string(), levels: levels.into_iter().map(str::to_string).collect(), codes }
    }

    /// A factor with levels in a given order (the first is the reference).
    pub fn with_levels<S: AsRef<str>>(name: &str, levels: &[&str], labels: &[Option<S>]) -> Result<Factor> {
        let levels: Vec<String> = levels.iter().map(|s| s.to_string()).collect();
        let mut codes = Vec::with_capacity(labels.len());
        for l in labels {
            codes.push(match l {
                None => None,
                Some(s) => Some(levels.iter().position(|x| x == s.as_ref()).ok_or_else(|| {
                    StatsError::InvalidArgument(format!(
                        "factor {name}: label {:?} is not one of its levels",
                        s.as_ref()
                    ))
                })?),
            });
        }
        Ok(Factor { name: name.to_string(), levels, codes })
    }

    /// The cross-classification of several factors (e.g. site × employment
    /// status), as R's `interaction()`/`strata()`; labels are joined by `.`.
    ///
    /// Each distinct combination of levels is labelled once (a trial has a
    /// few hundred, against one label per participant): the levels are the
    /// sorted distinct labels and each participant's code is its label's
    /// place, as [`Factor::from_labels`] of every participant's label gives.
    pub fn interaction(name: &str, factors: &[&Factor]) -> Result<Factor> {
        let n = factors.first().map_or(0, |f| f.codes.len());
        // Checked only when there are participants, as before.
        for f in factors.iter().filter(|_| n > 0) {
            check_len(&format!("factor {}", f.name), n, f.codes.len())?;
        }
        let mut combination: rustc_hash::FxHashMap<Vec<usize>, usize> = rustc_hash::FxHashMap::default();
        let mut labels: Vec<String> = Vec::new();
        let mut of: Vec<Option<usize>> = Vec::with_capacity(n);
        let mut key: Vec<usize> = Vec::with_capacity(factors.len());
        for i in 0..n {
            key.clear();
            key.extend(factors.iter().map_while(|f| f.codes[i]));
            if key.len() < factors.len() {
                of.push(None);
                continue;
            }
            let next = labels.len();
            let k = match combination.get(key.as_slice()) {
                Some(&k) => k,
                None => {
                    combination.insert(key.clone(), next);
                    next
                }
            };
            if k == next {
                let parts: Vec<&str> = factors.iter().zip(&key).map(|(f, &c)| f.levels[c].as_str()).collect();
                labels.push(parts.join("."));
            }
            of.push(Some(k));
        }
        let mut levels: Vec<&str> = labels.iter().map(String::as_str).collect();
        levels.sort_unstable();
        levels.dedup();
        let place: Vec<usize> = labels.iter().map(|l| levels.binary_search(&l.as_str()).unwrap_or(0)).collect();
        Ok(Factor {
            name: name.to_string(),
            levels: levels.into_iter().map(str::to_string).collect(),
            codes: of.into_iter().map(|k| k.map(|k| place[k])).collect(),
        })
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// True when there are no participants.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// A numeric baseline covariate (e.g. baseline PHQ-9, age).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Covariate {
    /// Variable name (the column name).
    pub name: String,
    /// Per participant; `None` or a non-finite value means missing.
    pub values: Vec<Option<f64>>,
}

impl Covariate {
    /// A covariate from values.
    pub fn new(name: &str, values: Vec<Option<f64>>) -> Covariate {
        Covariate { name: name.to_string(), values }
    }
}

/// The pre-specified adjustment set: factors then numeric covariates.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct Adjustment {
    /// Categorical variables (stratification factors first, by convention).
    pub factors: Vec<Factor>,
    /// Numeric covariates.
    pub covariates: Vec<Covariate>,
}

impl Adjustment {
    /// No adjustment.
    pub fn none() -> Adjustment {
        Adjustment::default()
    }

    pub(crate) fn check(&self, n: usize) -> Result<()> {
        for f in &self.factors {
            check_len(&format!("factor {}", f.name), n, f.codes.len())?;
        }
        for c in &self.covariates {
            check_len(&format!("covariate {}", c.name), n, c.values.len())?;
        }
        Ok(())
    }

    /// True when participant `i` has every adjustment variable.
    pub(crate) fn complete(&self, i: usize) -> bool {
        self.factors.iter().all(|f| f.codes[i].is_some())
            && self.covariates.iter().all(|c| c.values[i].is_some_and(f64::is_finite))
    }
}

/// A built design matrix over the analysed rows.
#[derive(Debug, Clone)]
pub(crate) struct Design {
    /// The full-rank matrix (aliased columns removed).
    pub x: DMatrix<f64>,
    /// Names of the columns of `x`.
    pub names: Vec<String>,
    /// Columns left out because they were linear combinations of others.
    pub aliased: Vec<String>,
    /// Position of the treatment column in `x`, if it was not aliased.
    pub treatment: Option<usize>,
    /// Positions of treatment-by-subgroup interaction columns in `x`.
    pub interactions: Vec<usize>,
}

/// Builds the design over `rows`: intercept, treated, factor dummies,
/// covariates, and (if `interact` is given) `treated:<factor><level>`
/// interaction columns, R's `treated * factor` coding.
pub(crate) fn build(treated: &[bool], adj: &Adjustment, interact: Option<&Factor>, rows: &[usize]) -> Design {
    let n = rows.len();
    // The candidate columns one after the other in one buffer (column-major,
    // as the design matrix is), which becomes the matrix itself when every
    // column is kept: a matrix of 100,000 rows is tens of megabytes, and a
    // column vector each and then a copy into the matrix doubled that.
    let mut data: Vec<f64> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    let mut kinds: Vec<u8> = Vec::new(); // 0 other, 1 treatment, 2 interaction
    data.extend(std::iter::repeat_n(1.0, n));
    names.push("(Intercept)".into());
    kinds.push(0);
    data.extend(rows.iter().map(|&i| f64::from(u8::from(treated[i]))));
    names.push("treated".into());
    kinds.push(1);
    let push_factor = |f: &Factor, data: &mut Vec<f64>, names: &mut Vec<String>| {
        let observed = observed_levels(f, rows);
        let mut added = Vec::new();
        for &lev in observed.iter().skip(1) {
            data.extend(rows.iter().map(|&i| f64::from(u8::from(f.codes[i] == Some(lev)))));
            names.push(format!("{}{}", f.name, f.levels[lev]));
            added.push(lev);
        }
        added
    };
    for f in &adj.factors {
        let added = push_factor(f, &mut data, &mut names);
        kinds.extend(std::iter::repeat_n(0, added.len()));
    }
    if let Some(f) = interact {
        // Main effect of the subgroup factor (if not already adjusted for).
        if !adj.factors.iter().any(|g| g.name == f.name) {
            let added = push_factor(f, &mut data, &mut names);
            kinds.extend(std::iter::repeat_n(0, added.len()));
        }
    }
    for c in &adj.covariates {
        data.extend(rows.iter().map(|&i| c.values[i].unwrap_or(0.0)));
        names.push(c.name.clone());
        kinds.push(0);
    }
    if let Some(f) = interact {
        for &lev in observed_levels(f, rows).iter().skip(1) {
            data.extend(rows.iter().map(|&i| f64::from(u8::from(treated[i] && f.codes[i] == Some(lev)))));
            names.push(format!("treated:{}{}", f.name, f.levels[lev]));
            kinds.push(2);
        }
    }
    let columns = names.len();
    let column = |c: usize| &data[c * n..(c + 1) * n];
    let keep = independent_columns(&(0..columns).map(column).collect::<Vec<&[f64]>>());
    let x = if keep.len() == columns {
        DMatrix::from_vec(n, columns, data)
    } else {
        let mut kept = Vec::with_capacity(n * keep.len());
        for &c in &keep {
            kept.extend_from_slice(column(c));
        }
        DMatrix::from_vec(n, keep.len(), kept)
    };
    let mut kept_names = Vec::new();
    let mut treatment = None;
    let mut interactions = Vec::new();
    for (j, &c) in keep.iter().enumerate() {
        kept_names.push(names[c].clone());
        match kinds[c] {
            1 => treatment = Some(j),
            2 => interactions.push(j),
            _ => {}
        }
    }
    let aliased = (0..columns).filter(|c| !keep.contains(c)).map(|c| names[c].clone()).collect();
    Design { x, names: kept_names, aliased, treatment, interactions }
}

/// Levels of `f` present among `rows`, in level order.
pub(crate) fn observed_levels(f: &Factor, rows: &[usize]) -> Vec<usize> {
    let mut seen = vec![false; f.levels.len()];
    for &i in rows {
        if let Some(c) = f.codes[i] {
            seen[c] = true;
        }
    }
    (0..f.levels.len()).filter(|&l| seen[l]).collect()
}

/// Indices of columns that are not (numerically) linear combinations of
/// earlier columns: Gram–Schmidt with re-orthogonalisation, a column being
/// aliased when its residual norm is below 1e-7 of its norm (the tolerance
/// R's `lm.fit`/`glm.fit` pass to LINPACK `dqrdc2`).
pub(crate) fn independent_columns<C: AsRef<[f64]>>(cols: &[C]) -> Vec<usize> {
    let n = cols.first().map_or(0, |c| c.as_ref().len());
    let slices: Vec<&[f64]> = cols.iter().map(AsRef::as_ref).collect();
    let (g, _) = gram_of_columns(&slices, n, None, None);
    clearly_independent(&g).unwrap_or_else(|| gram_schmidt(cols))
}

/// The same decision from the cross-product `G = XᵀX` alone (one pass over
/// the data instead of Gram–Schmidt's 2p): column j's squared residual
/// against the kept earlier columns is `G_jj − vᵀv` with `L v = G_Kj`, L the
/// Cholesky factor of the kept block. Returns the kept columns only when every
/// non-zero column is clearly independent (residual above 1e-4 of its norm,
/// far above both the 1e-7 tolerance and the rounding error of forming G);
/// otherwise `None`, and the caller decides by Gram–Schmidt on the columns.
fn clearly_independent(g: &DMatrix<f64>) -> Option<Vec<usize>> {
    let c = g.nrows();
    let mut keep: Vec<usize> = Vec::new();
    let mut l: Vec<Vec<f64>> = Vec::new(); // rows of the Cholesky factor of the kept block
    for j in 0..c {
        let gjj = g[(j, j)];
        if !gjj.is_finite() {
            return None;
        }
        if gjj == 0.0 {
            continue;
        }
        let mut v = Vec::with_capacity(keep.len());
        for (t, &kt) in keep.iter().enumerate() {
            let s: f64 = (0..t).map(|s| l[t][s] * v[s]).sum();
            v.push((g[(kt, j)] - s) / l[t][t]);
        }
        let r2 = gjj - v.iter().map(|x| x * x).sum::<f64>();
        if r2.is_nan() || r2 <= 1e-8 * gjj {
            return None;
        }
        v.push(r2.sqrt());
        l.push(v);
        keep.push(j);
    }
    Some(keep)
}

/// [`independent_columns`] by Gram–Schmidt over the full columns.
fn gram_schmidt<C: AsRef<[f64]>>(cols: &[C]) -> Vec<usize> {
    let mut basis: Vec<Vec<f64>> = Vec::new();
    let mut keep = Vec::new();
    for (j, c) in cols.iter().enumerate() {
        let c = c.as_ref();
        let norm0 = c.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm0 == 0.0 {
            continue;
        }
        let mut r = c.to_vec();
        for _ in 0..2 {
            for q in &basis {
                let dot: f64 = r.iter().zip(q).map(|(a, b)| a * b).sum();
                r.iter_mut().zip(q).for_each(|(a, b)| *a -= dot * b);
            }
        }
        let norm = r.iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm > 1e-7 * norm0 {
            r.iter_mut().for_each(|v| *v /= norm);
            basis.push(r);
            keep.push(j);
        }
    }
    keep
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The interaction as every participant's joined label gives it (the
    /// form [`Factor::interaction`] replaced), as the model.
    fn interaction_of_labels(name: &str, factors: &[&Factor]) -> Factor {
        let n = factors[0].codes.len();
        let labels: Vec<Option<String>> = (0..n)
            .map(|i| {
                let parts: Option<Vec<&str>> =
                    factors.iter().map(|f| f.codes[i].map(|c| f.levels[c].as_str())).collect();
                parts.map(|p| p.join("."))
            })
            .collect();
        Factor::from_labels(name, &labels)
    }

    proptest::proptest! {
        /// Levels found from the distinct labels are those of sorting and
        /// deduplicating every label; the codes index them alike.
        #[test]
        fn levels_from_distinct_labels_are_those_of_all_labels(
            labels in proptest::collection::vec(proptest::option::of("[a-c.]{0,3}"), 0..60),
        ) {
            let f = Factor::from_labels("f", &labels);
            let mut want: Vec<&str> = labels.iter().flatten().map(String::as_str).collect();
            want.sort_unstable();
            want.dedup();
            proptest::prop_assert_eq!(&f.levels, &want);
            let codes: Vec<Option<usize>> =
                labels.iter().map(|l| l.as_deref().map(|l| want.iter().position(|w| *w == l).unwrap())).collect();
            proptest::prop_assert_eq!(f.codes, codes);
        }
    }

    #[test]
    fn interactions_label_each_combination_as_every_participant_s_label_would() {
        // Levels with dots, so that two combinations can share a label
        // ("a.b" + "c" and "a" + "b.c"), and missing codes.
        let f = Factor::from_labels("f", &[Some("a"), Some("a.b"), None, Some("z"), Some("a"), Some("a.b"), Some("m")]);
        let g = Factor::from_labels("g", &[Some("b.c"), Some("c"), Some("c"), None, Some("c"), Some("b.c"), Some("c")]);
        let h = Factor::from_labels("h", &[Some("1"), Some("1"), Some("2"), Some("2"), None, Some("1"), Some("2")]);
        for factors in [vec![&f], vec![&f, &g], vec![&g, &f], vec![&f, &g, &h]] {
            assert_eq!(Factor::interaction("s", &factors).unwrap(), interaction_of_labels("s", &factors));
        }
        let x = Factor::interaction("s", &[&f, &g]).unwrap();
        assert_eq!(x.codes[0], x.codes[1], "a + b.c and a.b + c share the label a.b.c");
        let big: Vec<Factor> = (0..3)
            .map(|k| {
                let labels: Vec<Option<String>> = (0..5000)
                    .map(|i| ((i * (k + 3)) % 17 != 0).then(|| format!("L{}", (i * 7 + k) % (4 + k))))
                    .collect();
                Factor::from_labels(&format!("f{k}"), &labels)
            })
            .collect();
        let refs: Vec<&Factor> = big.iter().collect();
        assert_eq!(Factor::interaction("s", &refs).unwrap(), interaction_of_labels("s", &refs));
        assert!(Factor::interaction("s", &[&f, &Factor::from_labels("short", &[Some("x")])]).is_err());
        assert_eq!(Factor::interaction("s", &[]).unwrap().codes.len(), 0);
    }

    #[test]
    fn dummy_coding_and_aliasing() {
        let site = Factor::from_labels("site", &[Some("b"), Some("a"), Some("c"), Some("a")]);
        assert_eq!(site.levels, ["a", "b", "c"]);
        let copy = Factor { name: "copy".into(), ..site.clone() };
        let adj = Adjustment { factors: vec![site, copy], covariates: vec![] };
        let d = build(&[true, true, false, false], &adj, None, &[0, 1, 2, 3]);
        assert_eq!(d.names, ["(Intercept)", "treated", "siteb", "sitec"]);
        assert_eq!(d.aliased, ["copyb", "copyc"]);
        assert_eq!(d.treatment, Some(1));
    }

    #[test]
    fn the_cross_product_check_agrees_with_gram_schmidt() {
        let n = 500;
        let base: Vec<Vec<f64>> = vec![
            vec![1.0; n],
            (0..n).map(|i| f64::from(u8::from(i % 2 == 0))).collect(),
            (0..n).map(|i| f64::from(u8::from(i % 3 == 1))).collect(),
            (0..n).map(|i| (i % 17) as f64 + 0.5).collect(),
        ];
        // Clearly independent: decided from the cross-product alone.
        let (g, _) = gram_of_columns(&base.iter().map(Vec::as_slice).collect::<Vec<_>>(), n, None, None);
        assert_eq!(clearly_independent(&g), Some(vec![0, 1, 2, 3]));
        assert_eq!(independent_columns(&base), gram_schmidt(&base));
        // An exact combination, a zero column and a column close to a
        // combination (kept: 5e-6 of its norm, above the 1e-7 tolerance) go to Gram–Schmidt.
        let mut cols = base.clone();
        cols.push((0..n).map(|i| base[0][i] - base[1][i]).collect());
        cols.push(vec![0.0; n]);
        cols.push((0..n).map(|i| base[3][i] + if i == 7 { 1e-3 } else { 0.0 }).collect());
        let (g, _) = gram_of_columns(&cols.iter().map(Vec::as_slice).collect::<Vec<_>>(), n, None, None);
        assert_eq!(clearly_independent(&g), None);
        assert_eq!(independent_columns(&cols), vec![0, 1, 2, 3, 6]);
        assert_eq!(independent_columns(&cols), gram_schmidt(&cols));
    }

    #[test]
    fn unobserved_levels_are_dropped() {
        let f = Factor::with_levels("g", &["x", "y", "z"], &[Some("y"), Some("z"), Some("z")]).unwrap();
        let d = build(&[true, false, true], &Adjustment { factors: vec![f], covariates: vec![] }, None, &[0, 1, 2]);
        assert_eq!(d.names, ["(Intercept)", "treated", "gz"]);
    }
}
