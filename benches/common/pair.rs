//! Tables of two tools side by side (wharf against a reference client such
//! as `skopeo sync`), with the ratio first / second.

/// A table's title and column heads.
pub fn header(title: &str, a: &str, b: &str) {
    println!("\n{title}");
    println!("{:<48} {a:>14} {b:>14} {:>9}", "measure", "ratio");
}

/// One measure of both (`None`: not measured).
pub fn row(name: &str, a: f64, b: Option<f64>) {
    let ratio = b
        .map(|b| a / b)
        .filter(|r| r.is_finite())
        .map(|r| format!("{r:>8.2}x"))
        .unwrap_or_default();
    let b = b
        .map(|b| format!("{b:>14.2}"))
        .unwrap_or(format!("{:>14}", "-"));
    println!("{name:<48} {a:>14.2} {b} {ratio}");
}
