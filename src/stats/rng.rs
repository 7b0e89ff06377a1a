//! Random draws for multiple imputation, from a caller-supplied word source.
//!
//! The caller passes `&mut dyn FnMut() -> u32` yielding raw 32-bit words from
//! a named, value-stable generator (ChaCha20); this module turns words into
//! variates with fixed, documented algorithms, so the same words always give
//! the same imputations. Nothing here uses `rand`'s distribution helpers,
//! whose output may change between versions.
//!
//! - [`uniform`]: 53-bit uniform on [0, 1) from two words, the construction of
//!   Matsumoto & Nishimura's `genrand_res53`: `(a >> 5) * 2^26 + (b >> 6)`
//!   divided by 2^53.
//! - [`normal`]: Box–Muller (Box & Muller 1958), cosine branch only, from two
//!   uniforms (four words); the sine branch is discarded so that every
//!   normal consumes exactly four words and no state is kept.
//! - [`gamma`]: Marsaglia & Tsang (2000), "A simple method for generating
//!   gamma variables", ACM TOMS 26:363–372, with the `U^(1/a)` boost for
//!   shape < 1.
//! - [`chi_square`]: 2 × Gamma(df / 2).

/// A source of raw 32-bit random words.
pub type WordSource<'a> = dyn FnMut() -> u32 + 'a;

/// Uniform on [0, 1) with 53 random bits, from two words.
pub fn uniform(words: &mut WordSource<'_>) -> f64 {
    let a = u64::from(words() >> 5);
    let b = u64::from(words() >> 6);
    ((a << 26) + b) as f64 / 9_007_199_254_740_992.0
}

/// Standard normal by Box–Muller (cosine branch), from four words.
pub fn normal(words: &mut WordSource<'_>) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - uniform(words);
    let u2 = uniform(words);
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Gamma(shape, scale 1) by Marsaglia & Tsang (2000). `shape` must be > 0.
pub fn gamma(shape: f64, words: &mut WordSource<'_>) -> f64 {
    if shape < 1.0 {
        // Marsaglia & Tsang section 6: Gamma(a) = Gamma(a + 1) * U^(1/a).
        let g = gamma(shape + 1.0, words);
        let u = 1.0 - uniform(words);
        return g * u.powf(1.0 / shape);
    }
    let d = shape - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = normal(words);
        let v = 1.0 + c * x;
        if v <= 0.0 {
            continue;
        }
        let v = v * v * v;
        let u = 1.0 - uniform(words);
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// Chi-square with `df` degrees of freedom, as 2 × Gamma(df / 2).
pub fn chi_square(df: f64, words: &mut WordSource<'_>) -> f64 {
    2.0 * gamma(0.5 * df, words)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fixed, simple word source (xorshift32) for tests.
    fn xorshift(seed: u32) -> impl FnMut() -> u32 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            s
        }
    }

    #[test]
    fn uniform_from_known_words() {
        let mut words = [u32::MAX, u32::MAX, 0, 0].into_iter();
        let mut src = move || words.next().unwrap();
        let u = uniform(&mut src);
        assert_eq!(u, 1.0 - 2f64.powi(-53));
        assert_eq!(uniform(&mut src), 0.0);
    }

    #[test]
    fn moments_are_sensible() {
        let mut src = xorshift(12345);
        let n = 20_000;
        let (mut s1, mut s2) = (0.0, 0.0);
        for _ in 0..n {
            let z = normal(&mut src);
            s1 += z;
            s2 += z * z;
        }
        assert!((s1 / n as f64).abs() < 0.03);
        assert!((s2 / n as f64 - 1.0).abs() < 0.04);
        for &df in &[0.6, 3.0, 25.0] {
            let mean: f64 = (0..n).map(|_| chi_square(df, &mut src)).sum::<f64>() / n as f64;
            assert!((mean / df - 1.0).abs() < 0.05, "df {df} mean {mean}");
        }
    }
}
