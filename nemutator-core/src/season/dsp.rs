//! Signal-processing helpers: a fixed-seed PRNG, a radix-2 FFT, periodogram
//! peak discovery, autocorrelation and the normal tail quantile.

/// xorshift64* generator: tiny, fast and reproducible; not for cryptography.
#[derive(Clone, Debug)]
pub(super) struct XorShift(u64);

impl XorShift {
    /// A generator from any seed (0 is remapped).
    pub fn new(seed: u64) -> Self {
        let s = seed ^ 0x9E37_79B9_7F4A_7C15;
        Self(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform integer in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// In-place iterative radix-2 FFT; `re.len()` must be a power of two equal
/// to `im.len()` (otherwise nothing happens).
pub(super) fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    if n < 2 || !n.is_power_of_two() || im.len() != n {
        return;
    }
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let ang = -2.0 * std::f64::consts::PI / len as f64;
        let (w_re, w_im) = (ang.cos(), ang.sin());
        for start in (0..n).step_by(len) {
            let (mut c_re, mut c_im) = (1.0, 0.0);
            for k in 0..len / 2 {
                let (a, b) = (start + k, start + k + len / 2);
                let t_re = re[b] * c_re - im[b] * c_im;
                let t_im = re[b] * c_im + im[b] * c_re;
                re[b] = re[a] - t_re;
                im[b] = im[a] - t_im;
                re[a] += t_re;
                im[a] += t_im;
                let nc = c_re * w_re - c_im * w_im;
                c_im = c_re * w_im + c_im * w_re;
                c_re = nc;
            }
        }
        len <<= 1;
    }
}

/// Power spectrum `|X_k|^2` for `k = 0..=N/2` of `x` minus its mean,
/// zero-padded to `N`, the next power of two of at least `x.len()`.
pub(super) fn periodogram(x: &[f64]) -> (Vec<f64>, usize) {
    let n = x.len().max(2).next_power_of_two();
    let mean = if x.is_empty() {
        0.0
    } else {
        x.iter().sum::<f64>() / x.len() as f64
    };
    let mut re: Vec<f64> = x.iter().map(|v| v - mean).collect();
    re.resize(n, 0.0);
    let mut im = vec![0.0; n];
    fft(&mut re, &mut im);
    let power = (0..=n / 2).map(|k| re[k] * re[k] + im[k] * im[k]).collect();
    (power, n)
}

/// Periods (in seconds, multiples of `step`) whose periodogram peak stands
/// out of its neighbourhood (bins within a factor of two in frequency) by a
/// Fisher-style threshold `ln(K / alpha)`, where `K` is the number of
/// frequencies looked at. At most `max` periods, strongest first.
pub(super) fn discover_periods(
    x: &[f64],
    step: i64,
    range: (i64, i64),
    alpha: f64,
    max: usize,
) -> Vec<i64> {
    if max == 0 || x.len() < 16 || step <= 0 {
        return Vec::new();
    }
    let (power, n) = periodogram(x);
    let nf = n as f64;
    let stepf = step as f64;
    // Frequencies k whose period n*step/k lies within the range.
    let k_lo = ((nf * stepf / range.1 as f64).ceil() as usize).max(3);
    let k_hi =
        ((nf * stepf / range.0.max(1) as f64).floor() as usize).min(power.len().saturating_sub(2));
    if k_lo >= k_hi {
        return Vec::new();
    }
    let pad = (n as f64 / x.len() as f64).ceil() as usize;
    let threshold = ((k_hi - k_lo + 1) as f64 / alpha).ln();
    let mut found: Vec<(f64, f64)> = Vec::new();
    let mut band = Vec::new();
    for k in k_lo..=k_hi {
        let p = power[k];
        if !(p > power[k - 1] && p >= power[k + 1]) {
            continue;
        }
        band.clear();
        let (b_lo, b_hi) = ((k / 2).max(1), (2 * k).min(power.len() - 1));
        band.extend(
            (b_lo..=b_hi)
                .filter(|j| j.abs_diff(k) > 2 * pad)
                .map(|j| power[j]),
        );
        if band.len() < 8 {
            continue;
        }
        // The median of an exponential is ln 2 times its mean.
        let local_mean = super::prep::median(&mut band) / std::f64::consts::LN_2;
        if local_mean <= 0.0 || p / local_mean < threshold {
            continue;
        }
        // Parabolic refinement of the peak on the log power.
        let (l0, l1, l2) = (
            power[k - 1].max(1e-300).ln(),
            p.max(1e-300).ln(),
            power[k + 1].max(1e-300).ln(),
        );
        let den = l0 - 2.0 * l1 + l2;
        let delta = if den.abs() > 1e-12 {
            (0.5 * (l0 - l2) / den).clamp(-0.5, 0.5)
        } else {
            0.0
        };
        found.push((p / local_mean, nf / (k as f64 + delta)));
    }
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out: Vec<i64> = Vec::new();
    for (_, period_steps) in found {
        let p = (period_steps.round().max(2.0) as i64).saturating_mul(step);
        if !out
            .iter()
            .any(|q| (*q as i128 - p as i128).abs() * 50 < p as i128)
        {
            out.push(p);
        }
        if out.len() == max {
            break;
        }
    }
    out
}

/// Autocorrelation of the observed slots of `x` at `lag` (pairs with both
/// ends observed); `None` when there is no pair or no variance.
pub(super) fn autocorrelation(x: &[f64], observed: &[bool], lag: usize) -> Option<f64> {
    let (mut sum, mut cnt) = (0.0, 0usize);
    for (v, o) in x.iter().zip(observed) {
        if *o {
            sum += v;
            cnt += 1;
        }
    }
    if cnt < 2 || lag >= x.len() {
        return None;
    }
    let mean = sum / cnt as f64;
    let c0 = x
        .iter()
        .zip(observed)
        .filter(|(_, o)| **o)
        .map(|(v, _)| (v - mean) * (v - mean))
        .sum::<f64>()
        / cnt as f64;
    let (mut cl, mut pairs) = (0.0, 0usize);
    for i in 0..x.len() - lag {
        if observed[i] && observed[i + lag] {
            cl += (x[i] - mean) * (x[i + lag] - mean);
            pairs += 1;
        }
    }
    if pairs == 0 || c0 <= 0.0 {
        return None;
    }
    Some(cl / pairs as f64 / c0)
}

/// Complementary error function (Chebyshev fit, relative error < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 {
        r
    } else {
        2.0 - r
    }
}

/// `z` with `P(Z > z) = p` for a standard normal `Z` (bisection; `p` is
/// clamped to `[1e-300, 0.5]`).
pub(super) fn upper_normal_quantile(p: f64) -> f64 {
    let p = if p.is_finite() {
        p.clamp(1e-300, 0.5)
    } else {
        0.5
    };
    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
    for _ in 0..100 {
        let mid = 0.5 * (lo + hi);
        if 0.5 * erfc(mid / std::f64::consts::SQRT_2) > p {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}
