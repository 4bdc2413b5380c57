//! fool's image loading + preprocessing + model vs PyTorch/torchvision on the same files
//! (fixture made by scripts/fixtures/make_fixtures.py): same top-5, logits within LOGIT_TOL.

use fool::imageio::load_rgb;
use fool::model::Classifier;
use fool::preprocess::Preprocess;
use tch::{Device, Kind, Tensor};

/// Max abs logit difference accepted. Achieved: 5e-6 on all cases (the fixture is rounded to
/// 1e-5): the resize is a port of Pillow's and JPEGs are decoded by libjpeg-turbo as in Pillow.
const LOGIT_TOL: f64 = 1e-3;

#[test]
fn logits_match_torchvision() {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/torchvision_logits.json")).unwrap();
    let model_path = crate::common::asset("model.pt");
    let cases = fixture["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 5);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let flags = &case["fool"];
        let pre = Preprocess {
            resize: flags["resize"].as_u64().unwrap_or(256) as u32,
            resize_always: flags["resize_always"].as_bool().unwrap_or(false),
            ..Preprocess::default()
        };
        let model = Classifier::load(&model_path, Device::Cpu, pre).unwrap();
        let img = load_rgb(&crate::common::root().join(case["image"].as_str().unwrap())).unwrap();
        let x = model.pre.pixels(&img, Device::Cpu).unsqueeze(0);
        let ours = tch::no_grad(|| model.logits(&x))
            .unwrap()
            .get(0)
            .to_kind(Kind::Double);
        let theirs: Vec<f64> = case["logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let theirs = Tensor::from_slice(&theirs);
        let max_diff = (&ours - &theirs).abs().max().double_value(&[]);
        let top5: Vec<i64> = Vec::try_from(ours.topk(5, 0, true, true).1).unwrap();
        let want: Vec<i64> = case["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        println!("{name}: max |logit diff| = {max_diff:.6}, top5 {top5:?}");
        assert_eq!(top5, want, "{name}: top-5 differs from torchvision");
        assert!(
            max_diff < LOGIT_TOL,
            "{name}: max |logit diff| {max_diff} ≥ {LOGIT_TOL}"
        );
    }
}
