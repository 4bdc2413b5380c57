//! The documented user journey on the real ImageNet model (assets/ from ../shared):
//! predict → targeted attack → predict the saved PNG → JPEG defense → apply the perturbation.
//! Every claim is checked against the files on disk.

use crate::common::{asset, fool, ok, ok_json};
use ndarray::Array4;
use ndarray_npy::ReadNpyExt;

#[test]
fn predict_dog_top5() {
    let v = ok_json(
        fool()
            .args(["predict", "--json", "--quiet"])
            .arg(asset("dog.png")),
    );
    let top = v["top"].as_array().unwrap();
    assert_eq!(top.len(), 5);
    assert_eq!(top[0]["index"], 263);
    assert!(top[0]["label"].as_str().unwrap().starts_with("Pembroke"));
    // Same number as torchvision's (tests/fixtures/torchvision_logits.json, dog_as_is).
    assert!(
        (top[0]["prob"].as_f64().unwrap() - 0.9427).abs() < 1e-3,
        "{}",
        top[0]
    );
    let probs: Vec<f64> = top.iter().map(|c| c["prob"].as_f64().unwrap()).collect();
    assert!(probs.windows(2).all(|w| w[0] >= w[1]));
}

#[test]
fn dog_becomes_goldfish_and_the_saved_files_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let rec = ok_json(
        fool()
            .arg(asset("dog.png"))
            .args([
                "--target", "goldfish", "--json", "--quiet", "--seed", "7", "--out",
            ])
            .arg(dir.path()),
    );
    assert_eq!(rec["success"], true);
    assert_eq!(rec["original"]["top"][0]["index"], 263);
    assert_eq!(rec["adversarial"]["top"][0]["index"], 1);
    assert_eq!(rec["target"]["index"], 1);
    let eps = 10.0 / 255.0;
    assert!((rec["eps"].as_f64().unwrap() - eps).abs() < 1e-12);
    assert!(rec["linf"].as_f64().unwrap() <= eps + 1e-9);
    assert_eq!(rec["seed"], 7);
    assert_eq!(rec["model_sha256"].as_str().unwrap().len(), 64);

    // The PNG on disk: model resolution, within the budget of the dog in 8-bit levels
    // (checked here with the image crate, not with fool's own code).
    let png = std::path::PathBuf::from(rec["adversarial_image"].as_str().unwrap());
    assert_eq!(png, dir.path().join("dog_goldfish.png"));
    let adv = image::open(&png).unwrap().to_rgb8();
    let dog = image::open(asset("dog.png")).unwrap().to_rgb8();
    assert_eq!(adv.dimensions(), (224, 224));
    let max_levels = adv
        .as_raw()
        .iter()
        .zip(dog.as_raw())
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap();
    assert!(max_levels <= 10, "L∞ {max_levels}/255 > 10/255");
    assert!(max_levels > 0);

    // The record file equals what was printed.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rec["record"].as_str().unwrap()).unwrap())
            .unwrap();
    assert_eq!(saved["success"], true);
    assert_eq!(saved["linf"], rec["linf"]);

    // A fresh `fool predict` of the saved PNG says goldfish.
    let pv = ok_json(fool().args(["predict", "--json", "--quiet"]).arg(&png));
    assert_eq!(pv["top"][0]["index"], 1);
    assert!(
        (pv["top"][0]["prob"].as_f64().unwrap()
            - rec["adversarial"]["top"][0]["prob"].as_f64().unwrap())
        .abs()
            < 1e-6
    );

    // Through the JPEG defense: both predictions are reported.
    let dv = ok_json(
        fool()
            .args(["predict", "--json", "--quiet", "--defense", "jpeg:75"])
            .arg(&png),
    );
    assert_eq!(dv["defense"], "jpeg:75");
    assert_eq!(dv["undefended_top"][0]["index"], 1);
    assert!(dv["top"][0]["index"].as_u64().is_some());

    // The perturbation: float32 (1,3,224,224), normalized space; re-applying it gives goldfish.
    let npy = rec["perturbation"].as_str().unwrap();
    let r = Array4::<f32>::read_npy(std::fs::File::open(npy).unwrap()).unwrap();
    assert_eq!(r.shape(), &[1, 3, 224, 224]);
    let max_norm = r.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(
        max_norm <= (eps / 0.224) as f32 + 1e-4,
        "normalized-space max {max_norm}"
    );
    let applied = dir.path().join("reapplied.png");
    let av = ok_json(
        fool()
            .args(["apply", "--json", "--quiet", "--perturbation", npy, "-o"])
            .arg(&applied)
            .arg(asset("dog.png")),
    );
    assert_eq!(av["perturbed"][0]["index"], 1);
    assert_eq!(
        image::open(&applied).unwrap().to_rgb8(),
        adv,
        "apply did not reproduce the PNG"
    );

    // The side-by-side picture: three panels.
    let sbs = image::open(rec["side_by_side"].as_str().unwrap()).unwrap();
    assert!(sbs.width() > 3 * 224 && sbs.height() > 224);
}

#[test]
fn untargeted_attack_changes_the_label() {
    let dir = tempfile::tempdir().unwrap();
    let rec = ok_json(
        fool()
            .arg(asset("dog.png"))
            .args([
                "--untargeted",
                "--eps",
                "4/255",
                "--json",
                "--quiet",
                "--out",
            ])
            .arg(dir.path()),
    );
    assert_eq!(rec["success"], true);
    assert_eq!(rec["untargeted"], true);
    assert!(rec["target"].is_null());
    assert_ne!(rec["adversarial"]["top"][0]["index"], 263);
    assert!(rec["linf"].as_f64().unwrap() <= 4.0 / 255.0 + 1e-9);
    assert!(dir.path().join("dog_untargeted.png").exists());
}

#[test]
fn goal_not_reached_exits_3_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let out = fool()
        .arg(asset("dog.png"))
        .args([
            "--target", "1", "--steps", "1", "--eps", "1/255", "--quiet", "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("not fooled"), "{stdout}");
    assert!(stdout.contains("best p(target)"), "{stdout}");
    let rec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("dog_goldfish.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(rec["success"], false);
    assert_eq!(rec["steps_run"], 1);
}

#[test]
fn apply_accepts_the_tutorials_perturbation_file() {
    let dir = tempfile::tempdir().unwrap();
    let v = ok_json(
        fool()
            .args(["apply", "--json", "--quiet", "--perturbation"])
            .arg(asset("seed_adversarial_r.npy"))
            .arg("--out")
            .arg(dir.path())
            .arg(asset("dog.png")),
    );
    assert!(dir.path().join("dog_applied.png").exists());
    assert!(v["linf"].as_f64().unwrap() > 0.0);
    assert_eq!(v["original"][0]["index"], 263);
}

#[test]
fn human_output_names_both_predictions() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(fool()
        .arg(asset("dog.png"))
        .args(["--target", "tabby", "--quiet", "--out"])
        .arg(dir.path()));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("original:    Pembroke"), "{s}");
    assert!(s.contains("adversarial: tabby"), "{s}");
    assert!(s.contains("success:"), "{s}");
    assert!(dir.path().join("dog_tabby.png").exists());
}
