//! `post_transform`: what ONNX-ML classifiers and regressors apply to their scores, computed as
//! onnxruntime computes it (ml_common.h), including its quirks: a row of one score is only
//! transformed by PROBIT, and a binary classifier's single score becomes two columns.

use tract_onnx::pb::NodeProto;
use tract_onnx::tract_hir::internal::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PostTransform {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

/// How a binary classifier's single score `s` becomes two columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecondClass {
    /// `[1 - s, s]`, or `[1 - logistic(s), logistic(s)]` under LOGISTIC; other transforms are
    /// not applied.
    Complement,
    /// `[-s, s]`, or `[logistic(-s), logistic(s)]` under LOGISTIC.
    Mirror,
}

impl PostTransform {
    /// The node's `post_transform` attribute (NONE when absent).
    pub fn of(node: &NodeProto) -> TractResult<PostTransform> {
        let name: Option<String> = node.get_attr_opt("post_transform")?;
        Ok(match name.as_deref().unwrap_or("NONE") {
            "NONE" => PostTransform::None,
            "LOGISTIC" => PostTransform::Logistic,
            "SOFTMAX" => PostTransform::Softmax,
            "SOFTMAX_ZERO" => PostTransform::SoftmaxZero,
            "PROBIT" => PostTransform::Probit,
            other => bail!("unknown post_transform '{other}'"),
        })
    }

    /// Transforms `scores`, rows of `width` scores each, in place. As in onnxruntime, rows of
    /// one score are only changed by PROBIT.
    pub fn apply(self, scores: &mut [f32], width: usize) {
        if width == 0 {
            return;
        }
        if width == 1 {
            if self == PostTransform::Probit {
                scores.iter_mut().for_each(|s| *s = probit(*s));
            }
            return;
        }
        for row in scores.chunks_mut(width) {
            match self {
                PostTransform::None => {}
                PostTransform::Logistic => row.iter_mut().for_each(|s| *s = logistic(*s)),
                PostTransform::Softmax => softmax(row),
                PostTransform::SoftmaxZero => softmax_zero(row),
                PostTransform::Probit => row.iter_mut().for_each(|s| *s = probit(*s)),
            }
        }
    }

    /// A binary classifier's scores, one per row, as two columns per row.
    pub fn expand_binary(self, scores: &[f32], second: SecondClass) -> Vec<f32> {
        let mut out = Vec::with_capacity(scores.len() * 2);
        for &s in scores {
            let pair = match second {
                SecondClass::Complement if self == PostTransform::Logistic => {
                    let p = logistic(s);
                    [1.0 - p, p]
                }
                SecondClass::Complement => [1.0 - s, s],
                SecondClass::Mirror if self == PostTransform::Logistic => {
                    [logistic(-s), logistic(s)]
                }
                SecondClass::Mirror => [-s, s],
            };
            out.extend_from_slice(&pair);
        }
        out
    }
}

/// The logistic function, written as onnxruntime writes it (symmetric around 0).
pub fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

fn softmax(row: &mut [f32]) {
    let max = row
        .iter()
        .fold(-f32::MAX, |m, &s| if s > m { s } else { m });
    let mut sum = 0.0f32;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    row.iter_mut().for_each(|s| *s /= sum);
}

/// Softmax over the non-zero scores; zeros stay (almost) zero.
fn softmax_zero(row: &mut [f32]) {
    let max = row
        .iter()
        .fold(-f32::MAX, |m, &s| if s > m { s } else { m });
    let exp_neg_max = (-max).exp();
    let mut sum = 0.0f32;
    for s in row.iter_mut() {
        if *s > 0.000_000_1 || *s < -0.000_000_1 {
            *s = (*s - max).exp();
            sum += *s;
        } else {
            *s *= exp_neg_max;
        }
    }
    row.iter_mut().for_each(|s| *s /= sum);
}

fn probit(x: f32) -> f32 {
    std::f32::consts::SQRT_2 * erf_inv(2.0 * x - 1.0)
}

/// The approximation of the inverse error function onnxruntime uses (Winitzki's, a = 0.147).
fn erf_inv(x: f32) -> f32 {
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let ln = ((1.0 - x) * (1.0 + x)).ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * ln;
    let v2 = 1.0 / 0.147 * ln;
    sign * (-v + (v * v - v2).sqrt()).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_rows_sum_to_one_and_keep_order() {
        let mut scores = [1.0, 2.0, 3.0, 0.0, 0.0, 0.0];
        PostTransform::Softmax.apply(&mut scores, 3);
        assert!((scores[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(scores[0] < scores[1] && scores[1] < scores[2]);
        assert!(scores[3..].iter().all(|&s| (s - 1.0 / 3.0).abs() < 1e-7));
    }

    #[test]
    fn a_row_of_one_score_is_only_changed_by_probit() {
        for transform in [
            PostTransform::Logistic,
            PostTransform::Softmax,
            PostTransform::SoftmaxZero,
        ] {
            let mut scores = [0.3, -2.0];
            transform.apply(&mut scores, 1);
            assert_eq!(scores, [0.3, -2.0]);
        }
        let mut scores = [0.5];
        PostTransform::Probit.apply(&mut scores, 1);
        assert!(scores[0].abs() < 1e-6);
    }

    #[test]
    fn softmax_zero_leaves_zeros() {
        let mut scores = [0.0, 1.0, 1.0];
        PostTransform::SoftmaxZero.apply(&mut scores, 3);
        assert_eq!(scores[0], 0.0);
        assert!((scores[1] - 0.5).abs() < 1e-7);
    }

    #[test]
    fn logistic_is_symmetric() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(3.0) + logistic(-3.0) - 1.0).abs() < 1e-7);
        assert_eq!(logistic(-200.0), 0.0);
    }

    #[test]
    fn binary_scores_become_two_columns() {
        let none = PostTransform::None;
        assert_eq!(
            none.expand_binary(&[0.25], SecondClass::Complement),
            [0.75, 0.25]
        );
        assert_eq!(none.expand_binary(&[2.0], SecondClass::Mirror), [-2.0, 2.0]);
        let logistic_pair = PostTransform::Logistic.expand_binary(&[0.0], SecondClass::Mirror);
        assert_eq!(logistic_pair, [0.5, 0.5]);
        let softmax = PostTransform::Softmax.expand_binary(&[0.25], SecondClass::Complement);
        assert_eq!(softmax, [0.75, 0.25]);
        let logistic = PostTransform::Logistic.expand_binary(&[0.0], SecondClass::Complement);
        assert_eq!(logistic, [0.5, 0.5]);
    }

    #[test]
    fn probit_inverts_the_normal_cdf_approximately() {
        // Phi(1) = 0.8413447
        assert!((probit(0.841_344_7) - 1.0).abs() < 1e-2);
    }
}
