//! From the trees' scores to a regressor's outputs (`TreeEnsembleRegressor`,
//! `TreeEnsemble`), as onnxruntime computes them:
//! - one target: base value added, average divided by the tree count, then PROBIT if asked
//!   (onnxruntime ignores the other post transforms for one target, against the ONNX
//!   specification: `check` refuses them);
//! - several targets: the same per target, then the post transform over the row; a target
//!   no leaf scored is 0 (its base value is dropped).

use super::ensemble::{Aggregate, Ensemble, PostTransform};
use super::forest::Scores;
use super::real::Real;
use super::transform;

#[derive(Clone, Debug, PartialEq)]
pub struct Regression<T> {
    n_outputs: usize,
    aggregate: Aggregate,
    post_transform: PostTransform,
    base_values: Vec<T>,
    n_trees: T,
}

/// Refuses what onnxruntime answers against the specification.
pub fn check(ensemble: &Ensemble) -> Result<(), String> {
    let ignored = matches!(
        ensemble.post_transform,
        PostTransform::Softmax | PostTransform::Logistic | PostTransform::SoftmaxZero
    );
    if ensemble.n_outputs == 1 && ignored {
        return Err(format!(
            "post transform {:?} on a single target: onnxruntime ignores it (the ONNX specification applies it)",
            ensemble.post_transform
        ));
    }
    Ok(())
}

impl<T: Real> Regression<T> {
    pub fn new(ensemble: &Ensemble) -> Regression<T> {
        Regression {
            n_outputs: ensemble.n_outputs,
            aggregate: ensemble.aggregate,
            post_transform: ensemble.post_transform,
            base_values: ensemble
                .base_values
                .iter()
                .map(|&v| T::from_f64(v))
                .collect(),
            n_trees: T::from_count(ensemble.roots.len()),
        }
    }

    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    /// The outputs, `rows * n_outputs` values, in place of the scores.
    pub fn finish(&self, scores: Scores<T>) -> Vec<T> {
        let Scores { mut values, scored } = scores;
        if self.n_outputs == 1 {
            let origin = match self.base_values[..] {
                [base] => base,
                _ => T::ZERO,
            };
            for (v, &scored) in values.iter_mut().zip(&scored) {
                let score = match self.aggregate {
                    Aggregate::Sum => *v + origin,
                    Aggregate::Average => *v / self.n_trees + origin,
                    Aggregate::Min | Aggregate::Max if scored => *v + origin,
                    Aggregate::Min | Aggregate::Max => origin,
                };
                *v = match self.post_transform {
                    PostTransform::Probit => T::from_f32(transform::probit(score.to_f32())),
                    _ => score,
                };
            }
            return values;
        }
        let mut scratch = vec![];
        for (row, scored) in values
            .chunks_mut(self.n_outputs)
            .zip(scored.chunks(self.n_outputs))
        {
            for (j, (v, &scored)) in row.iter_mut().zip(scored).enumerate() {
                let base = self.base_values.get(j).copied();
                let value = match (self.aggregate, base) {
                    (Aggregate::Sum, Some(base)) => *v + base,
                    (Aggregate::Sum, None) => *v,
                    (Aggregate::Average, Some(base)) => *v / self.n_trees + base,
                    (Aggregate::Average, None) => *v / self.n_trees,
                    (Aggregate::Min | Aggregate::Max, base) => base.unwrap_or(T::ZERO) + *v,
                };
                *v = if scored { value } else { T::ZERO };
            }
            transform::apply(self.post_transform, row, &mut scratch);
        }
        values
    }
}

#[cfg(test)]
mod tests {
    use super::super::ensemble::{Child, Leaf};
    use super::*;

    fn regression(
        n_outputs: usize,
        aggregate: Aggregate,
        base_values: Vec<f64>,
    ) -> Regression<f32> {
        Regression::new(&Ensemble {
            branches: vec![],
            leaves: vec![Leaf::default()],
            roots: vec![Child::Leaf(0), Child::Leaf(0)],
            n_outputs,
            aggregate,
            post_transform: PostTransform::None,
            base_values,
            double_attributes: false,
        })
    }

    fn scores(values: Vec<f32>, scored: Vec<bool>) -> Scores<f32> {
        Scores { values, scored }
    }

    #[test]
    fn one_target() {
        let s = || scores(vec![3.0], vec![true]);
        assert_eq!(regression(1, Aggregate::Sum, vec![0.5]).finish(s()), [3.5]);
        assert_eq!(
            regression(1, Aggregate::Average, vec![0.5]).finish(s()),
            [2.0]
        );
        assert_eq!(regression(1, Aggregate::Max, vec![]).finish(s()), [3.0]);
        let mut probit = regression(1, Aggregate::Sum, vec![]);
        probit.post_transform = PostTransform::Probit;
        assert_eq!(probit.finish(scores(vec![0.3], vec![true])), [-0.524_445_9]);
    }

    #[test]
    fn a_target_no_leaf_scored_is_zero_even_with_a_base_value() {
        let s = scores(vec![0.4, 0.0], vec![true, false]);
        assert_eq!(
            regression(2, Aggregate::Sum, vec![0.5, 0.25]).finish(s.clone()),
            [0.9, 0.0]
        );
        assert_eq!(
            regression(2, Aggregate::Average, vec![0.5, 0.25]).finish(s.clone()),
            [0.7, 0.0]
        );
        assert_eq!(regression(2, Aggregate::Min, vec![]).finish(s), [0.4, 0.0]);
    }
}
