//! From the trees' scores to a classifier's label and scores, as onnxruntime 1.31 computes
//! them. Three classes or more: base values added, the label is the first class with the
//! highest score among the classes that have one, the post transform runs over the row.
//!
//! Two classes follow onnxruntime's binary rules, which depend on how many base values
//! there are, on whether every weight is for one class (the usual export of a binary model:
//! one score, the other column derived from it) and on whether all weights are positive:
//! - the label compares the score of class 1 (else of class 0) with 0.5 when every weight is
//!   for one class and none is negative (probabilities), else with 0;
//! - with one score, the second column is `1 - s` (probabilities) or `-s` (margins), both
//!   through the logistic function under LOGISTIC; with two base values and scores for
//!   class 1, class 1's score is class 0's plus the second base value.
//!
//! Configurations where onnxruntime writes uninitialised memory or labels outside the
//! model's own list are refused by `Classes::check`.

use super::ensemble::{Ensemble, PostTransform};
use super::forest::Scores;
use super::real::Real;
use super::transform;
use std::collections::HashSet;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Labels {
    Int64(Vec<i64>),
    Strings(Vec<String>),
}

impl Labels {
    pub fn len(&self) -> usize {
        match self {
            Labels::Int64(v) => v.len(),
            Labels::Strings(v) => v.len(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Classes {
    pub labels: Labels,
    /// Every weight is for the same class (onnxruntime's "binary case" when there are two).
    one_weighted_class: bool,
    /// No weight is negative: the scores are probabilities.
    weights_non_negative: bool,
}

/// A two-class row with a single score, and how onnxruntime completes it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum SecondColumn {
    /// `[1 - s, s]`.
    Complement,
    /// `[-s, s]`.
    Opposite,
}

impl Classes {
    /// `class_ids` and `weights` are the whole `class_ids` and `class_weights` lists, weights
    /// on branches included, as onnxruntime reads them for these two properties.
    pub fn new(labels: Labels, class_ids: &[i64], weights: &[f64]) -> Classes {
        let distinct: HashSet<i64> = class_ids.iter().copied().collect();
        Classes {
            labels,
            one_weighted_class: distinct.len() == 1,
            weights_non_negative: !weights.iter().any(|&w| w < 0.0),
        }
    }

    /// Refuses the configurations onnxruntime answers with garbage.
    pub fn check(&self, ensemble: &Ensemble) -> Result<(), String> {
        let n = self.labels.len();
        if n < 2 {
            return Err(format!(
                "has {n} class label(s); a classifier needs two or more (onnxruntime answers labels that are not in the list)"
            ));
        }
        if n > 2 {
            return Ok(());
        }
        let base = ensemble.base_values.len();
        // A row has a single score when no leaf it reaches scores class 1.
        let single_score_rows = base < 2
            && ensemble
                .leaves
                .iter()
                .any(|leaf| !leaf.weights.iter().any(|&(class, _)| class == 1));
        if single_score_rows && base == 1 && !self.one_weighted_class {
            return Err("two classes, weights for both and one base value: onnxruntime leaves the second score of some rows unwritten".into());
        }
        if single_score_rows && ensemble.post_transform == PostTransform::Probit {
            return Err("two classes under PROBIT with fewer than two base values: onnxruntime leaves the second score of some rows unwritten".into());
        }
        if !self.one_weighted_class
            && let Labels::Int64(labels) = &self.labels
            && labels[..] != [0, 1]
        {
            return Err(format!(
                "two classes with weights for both: onnxruntime answers the label 0 or 1 here, not one of the model's labels {labels:?}"
            ));
        }
        Ok(())
    }

    /// Each row's label (an index into the labels) and its scores, `rows * n` floats.
    pub fn finish<T: Real>(
        &self,
        ensemble: &Finish<T>,
        scores: Scores<T>,
    ) -> Result<(Vec<usize>, Vec<f32>), String> {
        let n = self.labels.len();
        let rows = scores.values.len() / n;
        let mut labels = Vec::with_capacity(rows);
        let mut out = Vec::with_capacity(rows * n);
        let mut row_values = vec![T::ZERO; n];
        let mut scratch = vec![];
        for (row, (values, scored)) in scores
            .values
            .chunks(n)
            .zip(scores.scored.chunks(n))
            .enumerate()
        {
            if n == 2 {
                let (label, pair) =
                    self.binary(ensemble, [values[0], values[1]], [scored[0], scored[1]]);
                labels.push(label);
                out.extend(pair);
                continue;
            }
            let mut best: Option<(usize, T)> = None;
            for k in 0..n {
                let (mut value, mut has) = (values[k], scored[k]);
                if let Some(&base) = ensemble.base_values.get(k) {
                    value = if has { value + base } else { base };
                    has = true;
                }
                if has && best.is_none_or(|(_, top)| value > top) {
                    best = Some((k, value));
                }
                row_values[k] = if has { value } else { T::ZERO };
            }
            let (label, _) = best.ok_or_else(|| {
                format!("row {row}: no class has a score (the leaves it reaches have no weight)")
            })?;
            labels.push(label);
            transform::apply(ensemble.post_transform, &mut row_values, &mut scratch);
            out.extend(row_values.iter().map(|v| v.to_f32()));
        }
        Ok((labels, out))
    }

    /// onnxruntime's two-class rules for one row (see the module comment).
    fn binary<T: Real>(
        &self,
        ensemble: &Finish<T>,
        values: [T; 2],
        scored: [bool; 2],
    ) -> (usize, [f32; 2]) {
        let ([mut s0, mut s1], [h0, mut h1]) = (values, scored);
        let mut second = Some(SecondColumn::Opposite);
        let mut two_scores = true;
        match ensemble.base_values[..] {
            [b0, b1] => {
                if h1 {
                    s1 = b1 + s0;
                    s0 = -s1;
                    h1 = true;
                } else {
                    s1 = s1 + b1;
                    s0 = s0 + b0;
                }
                second = None;
            }
            [b0] => {
                s0 = s0 + b0;
                two_scores = h1;
                second = None;
            }
            _ => two_scores = h1,
        }
        let positive = if two_scores && h1 {
            s1
        } else if h0 {
            s0
        } else {
            T::ZERO
        };
        let label = if self.one_weighted_class {
            let (threshold, kind) = if self.weights_non_negative {
                (T::HALF, SecondColumn::Complement)
            } else {
                (T::ZERO, SecondColumn::Opposite)
            };
            second = Some(kind);
            usize::from(positive > threshold)
        } else {
            usize::from(positive > T::ZERO)
        };

        let post = ensemble.post_transform;
        if two_scores {
            let mut pair = [if h0 { s0 } else { T::ZERO }, if h1 { s1 } else { T::ZERO }];
            transform::apply(post, &mut pair, &mut vec![]);
            return (label, pair.map(|v| v.to_f32()));
        }
        let v = if h0 { s0 } else { T::ZERO };
        // `check` refused the configurations that leave `second` unset or use PROBIT here.
        let pair = match (post, second) {
            (PostTransform::Logistic, _) => [
                transform::logistic(-v.to_f32()),
                transform::logistic(v.to_f32()),
            ],
            (_, Some(SecondColumn::Complement)) => [(T::ONE - v).to_f32(), v.to_f32()],
            _ => [(-v).to_f32(), v.to_f32()],
        };
        (label, pair)
    }
}

/// What the finishing step needs from the ensemble, in the ensemble's number type.
#[derive(Clone, Debug, PartialEq)]
pub struct Finish<T> {
    pub base_values: Vec<T>,
    pub post_transform: PostTransform,
}

impl<T: Real> Finish<T> {
    pub fn new(ensemble: &Ensemble) -> Finish<T> {
        Finish {
            base_values: ensemble
                .base_values
                .iter()
                .map(|&v| T::from_f64(v))
                .collect(),
            post_transform: ensemble.post_transform,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classes(n: usize, ids: &[i64], weights: &[f64]) -> Classes {
        Classes::new(
            Labels::Int64((0..n as i64).map(|k| k * 2 + 3).collect()),
            ids,
            weights,
        )
    }

    fn finish(base_values: Vec<f32>, post_transform: PostTransform) -> Finish<f32> {
        Finish {
            base_values,
            post_transform,
        }
    }

    fn run(
        c: &Classes,
        f: &Finish<f32>,
        values: &[f32],
        scored: &[bool],
    ) -> (Vec<usize>, Vec<f32>) {
        c.finish(
            f,
            Scores {
                values: values.to_vec(),
                scored: scored.to_vec(),
            },
        )
        .unwrap()
    }

    // The expected answers below are onnxruntime 1.31.1's for the same configurations (a
    // stump with leaves scoring 0.4 and 0.6 or -0.6, labels [3, 7]).

    #[test]
    fn binary_probabilities_with_one_score() {
        let c = classes(2, &[0, 0], &[0.4, 0.6]);
        let none = finish(vec![], PostTransform::None);
        assert_eq!(
            run(
                &c,
                &none,
                &[0.4, 0.0, 0.6, 0.0],
                &[true, false, true, false]
            ),
            (vec![0, 1], vec![0.6, 0.4, 0.39999998, 0.6])
        );
        let logistic = finish(vec![], PostTransform::Logistic);
        assert_eq!(
            run(&c, &logistic, &[0.4, 0.0], &[true, false]).1,
            [0.401_312_35, 0.598_687_65]
        );
        // A weightless leaf: no score at all.
        assert_eq!(
            run(&c, &none, &[0.0, 0.0], &[false, false]),
            (vec![0], vec![1.0, 0.0])
        );
    }

    #[test]
    fn binary_margins_with_one_score_and_one_base_value() {
        let c = classes(2, &[0, 0], &[0.4, -0.6]);
        let f = finish(vec![0.3], PostTransform::None);
        assert_eq!(
            run(&c, &f, &[0.4, 0.0, -0.6, 0.0], &[true, false, true, false]),
            (vec![1, 0], vec![-0.70000005, 0.70000005, 0.3, -0.3])
        );
    }

    #[test]
    fn binary_with_two_base_values() {
        // Scores for class 1: class 1 becomes class 0's score plus the second base value.
        let c = classes(2, &[1, 1], &[0.4, -0.6]);
        let f = finish(vec![0.3, 0.7], PostTransform::None);
        assert_eq!(
            run(&c, &f, &[0.0, 0.4], &[false, true]),
            (vec![1], vec![0.0, 0.7])
        );
        // Both classes scored.
        let c = classes(2, &[0, 1], &[0.4, 0.6]);
        assert_eq!(
            run(&c, &f, &[0.4, 0.6], &[true, true]),
            (vec![1], vec![-1.1, 1.1])
        );
        // Only class 0 scored: "binary as multiclass", class 1 left at 0.
        let c = classes(2, &[0, 0], &[0.4, -0.6]);
        assert_eq!(
            run(&c, &f, &[0.4, 0.0], &[true, false]),
            (vec![1], vec![0.70000005, 0.0])
        );
    }

    #[test]
    fn multiclass_skips_classes_without_a_score() {
        let c = classes(3, &[0, 1], &[0.4, -0.6]);
        let none = finish(vec![], PostTransform::None);
        // Class 1 scored -0.6, the others nothing: the label is class 1.
        assert_eq!(
            run(&c, &none, &[0.0, -0.6, 0.0], &[false, true, false]),
            (vec![1], vec![0.0, -0.6, 0.0])
        );
        let base = finish(vec![0.1, 0.2, 0.3], PostTransform::None);
        assert_eq!(
            run(&c, &base, &[0.0, -0.6, 0.0], &[false, true, false]),
            (vec![2], vec![0.1, -0.40000004, 0.3])
        );
        let err = c.finish(
            &none,
            Scores {
                values: vec![0.0; 3],
                scored: vec![false; 3],
            },
        );
        assert!(err.unwrap_err().contains("no class has a score"));
    }
}
