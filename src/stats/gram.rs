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

/// Dot product with four accumulators in a fixed order.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = [0.0f64; 4];
    let (ac, bc) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        s[0] += x[0] * y[0];
        s[1] += x[1] * y[1];
        s[2] += x[2] * y[2];
        s[3] += x[3] * y[3];
    }
    let mut tail = 0.0;
    for (x, y) in ar.iter().zip(br) {
        tail += x * y;
    }
    (s[0] + s[1]) + (s[2] + s[3]) + tail
}

/// `XᵀWX` and, if `z` is given, `XᵀWz`, with `W = diag(w)` (all ones when
/// `w` is `None`).
pub(crate) fn weighted_gram(x: &DMatrix<f64>, w: Option<&[f64]>, z: Option<&[f64]>) -> (DMatrix<f64>, DVector<f64>) {
    let n = x.nrows();
    let data = x.as_slice();
    let cols: Vec<&[f64]> = (0..x.ncols()).map(|j| &data[j * n..(j + 1) * n]).collect();
    gram_of_columns(&cols, n, w, z)
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
        for j in 0..p {
            let wxj = &wx[j * BLOCK..j * BLOCK + len];
            for k in j..p {
                a[j * p + k] += dot(wxj, col(k));
            }
            if let Some(z) = z {
                b[j] += dot(wxj, &z[start..start + len]);
            }
        }
        start += len;
    }
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
