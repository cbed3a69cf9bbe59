//! The post transforms, computed in float with onnxruntime's formulas (its PROBIT is an
//! approximation of the inverse error function, not the exact one), so scores match its
//! answers to the last bits wherever the C library's `expf`/`logf` agree.

use super::ensemble::PostTransform;
use super::real::Real;

pub fn logistic(v: f32) -> f32 {
    let e = 1.0 / (1.0 + (-v.abs()).exp());
    if v < 0.0 { 1.0 - e } else { e }
}

/// onnxruntime's approximation of erf⁻¹.
fn erf_inv(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0f32 } else { 1.0 };
    let x = (1.0 - x) * (1.0 + x);
    let log = x.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    sign * v3.sqrt()
}

pub fn probit(v: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * v - 1.0)
}

fn softmax(values: &mut [f32]) {
    let max = values
        .iter()
        .fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Softmax that leaves (near-)zero scores at zero (scaled by exp(-max)).
fn softmax_zero(values: &mut [f32]) {
    let max = values
        .iter()
        .fold(-f32::MAX, |m, &v| if v > m { v } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for v in values.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    for v in values.iter_mut() {
        *v /= sum;
    }
}

/// Applies `transform` to one row of two or more scores, in place. NONE keeps the values
/// as they are (double stays double); the others compute in float, as onnxruntime does.
pub fn apply<T: Real>(transform: PostTransform, row: &mut [T], scratch: &mut Vec<f32>) {
    match transform {
        PostTransform::None => {}
        PostTransform::Logistic => row
            .iter_mut()
            .for_each(|v| *v = T::from_f32(logistic(v.to_f32()))),
        PostTransform::Probit => row
            .iter_mut()
            .for_each(|v| *v = T::from_f32(probit(v.to_f32()))),
        PostTransform::Softmax | PostTransform::SoftmaxZero => {
            scratch.clear();
            scratch.extend(row.iter().map(|v| v.to_f32()));
            if transform == PostTransform::Softmax {
                softmax(scratch);
            } else {
                softmax_zero(scratch);
            }
            for (v, &s) in row.iter_mut().zip(scratch.iter()) {
                *v = T::from_f32(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_is_symmetric_and_exact_at_zero() {
        assert_eq!(logistic(0.0), 0.5);
        for v in [0.1f32, 0.4, 3.0, 20.0] {
            assert_eq!(logistic(-v), 1.0 - logistic(v));
        }
        assert_eq!(logistic(-200.0), 0.0);
    }

    #[test]
    fn probit_is_onnxruntimes_approximation() {
        // onnxruntime 1.31.1's answers for PROBIT of 0.4, 0.3, 0.1, 0.8 and 0.5.
        assert_eq!(probit(0.4), -0.253_353_5);
        assert_eq!(probit(0.3), -0.524_445_9);
        assert_eq!(probit(0.1), -1.281_712_9);
        assert_eq!(probit(0.8), 0.841_756_1);
        assert_eq!(probit(0.5), 0.0);
        assert_eq!(probit(0.0), f32::NEG_INFINITY);
        assert!(probit(-0.6).is_nan());
    }

    #[test]
    fn softmaxes() {
        let mut scratch = vec![];
        let mut row = [0.4f32, 0.0, 0.0];
        apply(PostTransform::Softmax, &mut row, &mut scratch);
        // onnxruntime 1.31.1's answer for a three-class row scoring only 0.4 for class 0.
        assert_eq!(row, [0.427_233_58, 0.286_383_2, 0.286_383_2]);
        let mut row = [0.4f32, 0.0, 0.0];
        apply(PostTransform::SoftmaxZero, &mut row, &mut scratch);
        assert_eq!(row, [1.0, 0.0, 0.0]);
        let mut row = [0.0f64, 0.0];
        apply(PostTransform::SoftmaxZero, &mut row, &mut scratch);
        assert!(
            row[0].is_nan(),
            "all-zero rows divide 0 by 0, as in onnxruntime"
        );
    }
}
