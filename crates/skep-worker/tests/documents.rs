//! Reading documents through `skep_worker::document::read` against real
//! Tesseract, Poppler and qpdf, on files generated at test time: whole
//! files and page ranges, the PDF modes, turned pages, the artefacts staged
//! for the controller, and broken or hostile files, which must end in a
//! bounded failure and leave the worker able to read its next task.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use skep_api::{Artefact, FailureReason, MAX_INLINE_TEXT, PageRange, PageSource, PdfMode, STAGED_TEXT_FILE};
use skep_testkit::documents::{DocOptions, generate_documents};
use skep_testkit::office::generate_office;
use skep_testkit::{ImageFormat, PageSize, cer, encode_image, load_truth, page_text, render_page};
use skep_worker::document::{self, ReadOutput, ReadRequest, ReadResult};
use skep_worker::staging::{LAYER_FILE, StagingTarget};
use skep_worker::{DEFAULT_MAX_FILE_BYTES, Engine, EngineConfig, OcrError, OcrSlot};

/// Highest character error rate of a page read well.
const READS_WELL: f64 = 0.05;
/// Separator of pages in a result's text and in the ground truth.
const PAGE_BREAK: &str = "\n\x0c\n";
/// How long a hostile file may make a slot wait, and the slack on top of
/// it for the slot to answer.
const HOSTILE_TIMEOUT: Duration = Duration::from_secs(4);
const SLACK: Duration = Duration::from_millis(1500);

/// The documents of `skep_testkit::documents` and `skep_testkit::office`,
/// generated once per test process (about ten seconds in a debug build).
struct Docs {
    pages: PathBuf,
    truth: PathBuf,
}

impl Docs {
    fn path(&self, rel: &str) -> PathBuf {
        self.pages.join(rel)
    }

    /// The ground truth of each page of `rel`.
    fn truth_pages(&self, rel: &str) -> Vec<String> {
        load_truth(&self.truth, rel)
            .expect("ground truth")
            .split(PAGE_BREAK)
            .map(str::to_owned)
            .collect()
    }
}

fn docs() -> &'static Docs {
    static DOCS: OnceLock<Docs> = OnceLock::new();
    DOCS.get_or_init(|| {
        // NB: a static is never dropped, so the folder lives under cargo's
        // scratch folder for integration tests, and each run removes those
        // of runs long over.
        let scratch = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_old_fixtures(scratch);
        let dir = tempfile::Builder::new()
            .prefix(FIXTURE_PREFIX)
            .tempdir_in(scratch)
            .expect("tempdir")
            .keep();
        let (pages, truth) = (dir.join("pages"), dir.join("truth"));
        let opts = DocOptions {
            seed: 5,
            size: PageSize::Small,
            big_pdf_pages: None,
        };
        generate_documents(&pages, &truth, &opts).expect("generate documents");
        generate_office(&pages, &truth, 5).expect("generate office documents");
        Docs { pages, truth }
    })
}

const FIXTURE_PREFIX: &str = "documents-";

/// Removes the fixture folders of earlier runs, an hour after they began.
fn remove_old_fixtures(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if old && entry.file_name().to_string_lossy().starts_with(FIXTURE_PREFIX) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A folder of the test's own, for files it makes.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// An upright page of known text, encoded as `format`, turned `turn`
/// degrees clockwise first.
fn page_file(dir: &Path, name: &str, seed: u64, format: ImageFormat, turn: u16) -> (PathBuf, String) {
    let lines = page_text(seed, PageSize::Small);
    let page = render_page(&lines, PageSize::Small, seed);
    let page = match turn {
        90 => image::imageops::rotate90(&page),
        180 => image::imageops::rotate180(&page),
        270 => image::imageops::rotate270(&page),
        _ => page,
    };
    let path = dir.join(name);
    std::fs::write(&path, encode_image(&page, format).expect("encode")).expect("write page");
    (path, lines.join("\n"))
}

fn request(path: &Path, pdf: PdfMode) -> ReadRequest {
    let config = EngineConfig {
        pdf,
        ..EngineConfig::default()
    };
    ReadRequest {
        deadline: Instant::now() + Duration::from_secs(120),
        ..ReadRequest::whole_file(path, config, DEFAULT_MAX_FILE_BYTES)
    }
}

fn range(first: u32, last: u32) -> Option<PageRange> {
    Some(PageRange { first, last })
}

fn engine() -> Engine {
    Engine::new("eng").expect("tesseract with eng")
}

fn read_ok(engine: &mut Engine, req: &ReadRequest) -> ReadResult {
    match document::read(engine, req) {
        Ok(ReadOutput::Read(r)) => r,
        Ok(ReadOutput::Split { pages }) => panic!("{}: split into {pages} pages", req.path.display()),
        Err(e) => panic!("{}: {e}", req.path.display()),
    }
}

fn read_err(engine: &mut Engine, req: &ReadRequest) -> OcrError {
    match document::read(engine, req) {
        Err(e) => e,
        Ok(out) => panic!("{}: read although it must fail: {out:?}", req.path.display()),
    }
}

fn numbers(r: &ReadResult) -> Vec<u32> {
    r.page_info.iter().map(|p| p.number).collect()
}

fn sources(r: &ReadResult) -> Vec<PageSource> {
    r.page_info.iter().map(|p| p.source).collect()
}

fn rotations(r: &ReadResult) -> Vec<u16> {
    r.page_info.iter().map(|p| p.rotation).collect()
}

fn page_texts(r: &ReadResult) -> Vec<&str> {
    r.text.split(PAGE_BREAK).collect()
}

fn assert_reads_well(truth: &str, text: &str, what: &str) {
    let e = cer(truth, text);
    assert!(
        e <= READS_WELL,
        "{what}: CER {e:.3}\n--- truth\n{truth}\n--- read\n{text}"
    );
}

#[test]
fn a_whole_pdf_over_pages_per_task_is_split() {
    let d = docs();
    let mut engine = engine();
    let mut req = request(&d.path("docs/mixed.pdf"), PdfMode::Auto);
    req.pages_per_task = 3;
    match document::read(&mut engine, &req).expect("reads") {
        ReadOutput::Split { pages } => assert_eq!(pages, 4),
        ReadOutput::Read(r) => panic!("4 pages over 3 per task were read: {r:?}"),
    }
}

#[test]
fn a_split_reads_no_page() {
    // Page 2 would keep Poppler busy for far longer than the deadline:
    // answering `Split` in time shows no page was opened.
    let dir = scratch();
    let text = text_page(&lines("split", 20));
    let path = dir.path().join("two.pdf");
    std::fs::write(&path, pdf_of_pages(&[text, xobject_bomb_page()])).expect("write");
    let mut req = request(&path, PdfMode::Auto);
    req.pages_per_task = 1;
    req.deadline = Instant::now() + Duration::from_secs(20);
    let started = Instant::now();
    match document::read(&mut engine(), &req).expect("reads") {
        ReadOutput::Split { pages } => assert_eq!(pages, 2),
        ReadOutput::Read(r) => panic!("read instead of split: {r:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn a_whole_pdf_within_pages_per_task_is_read_whole() {
    let d = docs();
    let rel = "docs/born-digital.pdf";
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.pages_per_task = 4;
    let r = read_ok(&mut engine(), &req);
    assert_eq!(r.pages, 3);
    assert_eq!(numbers(&r), [1, 2, 3]);
    let truth = d.truth_pages(rel);
    for (i, text) in page_texts(&r).iter().enumerate() {
        assert_reads_well(&truth[i], text, &format!("page {}", i + 1));
    }
}

#[test]
fn a_page_range_reads_exactly_its_pages() {
    let d = docs();
    let rel = "docs/born-digital.pdf";
    let truth = d.truth_pages(rel);
    let mut engine = engine();
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.pages = range(2, 3);
    req.pages_per_task = 1;
    let r = read_ok(&mut engine, &req);
    assert_eq!(r.pages, 2);
    assert_eq!(numbers(&r), [2, 3]);
    let texts = page_texts(&r);
    assert_reads_well(&truth[1], texts[0], "page 2");
    assert_reads_well(&truth[2], texts[1], "page 3");

    req.pages = range(3, 3);
    let r = read_ok(&mut engine, &req);
    assert_eq!(numbers(&r), [3]);
    assert_reads_well(&truth[2], &r.text, "page 3 alone");

    for (first, last) in [(3, 4), (4, 4), (0, 1), (3, 2)] {
        req.pages = range(first, last);
        let err = read_err(&mut engine, &req);
        assert_eq!(err.reason, FailureReason::Corrupt, "pages {first}-{last}: {err}");
    }
}

/// A range past the end means the file changed since it was split; no
/// mode may answer it with pages that are not there.
#[test]
fn a_range_past_the_end_is_refused_in_every_mode() {
    let d = docs();
    let mut engine = engine();
    for mode in [PdfMode::Auto, PdfMode::Text, PdfMode::Ocr] {
        let mut req = request(&d.path("docs/born-digital.pdf"), mode);
        req.pages = range(3, 4);
        match document::read(&mut engine, &req) {
            Err(e) => assert_eq!(e.reason, FailureReason::Corrupt, "{mode:?}: {e}"),
            Ok(out) => panic!("{mode:?}: pages 3-4 of 3 answered {out:?}"),
        }
    }
}

#[test]
fn auto_takes_text_layers_and_ocrs_scanned_pages() {
    let d = docs();
    let rel = "docs/mixed.pdf";
    let truth = d.truth_pages(rel);
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.pages_per_task = 4;
    let r = read_ok(&mut engine(), &req);
    assert_eq!(numbers(&r), [1, 2, 3, 4]);
    assert_eq!(
        sources(&r),
        [PageSource::Text, PageSource::Ocr, PageSource::Text, PageSource::Ocr]
    );
    let texts = page_texts(&r);
    for (i, text) in texts.iter().enumerate() {
        assert_reads_well(&truth[i], text, &format!("page {}", i + 1));
    }
    // The text layer is taken as it is.
    for i in [0, 2] {
        assert_eq!(cer(&truth[i], texts[i]), 0.0, "page {}", i + 1);
        assert_eq!(r.page_info[i].confidence, 100.0);
    }
}

#[test]
fn ocr_mode_reads_text_pages_by_ocr() {
    let d = docs();
    let rel = "docs/mixed.pdf";
    let truth = d.truth_pages(rel);
    let mut req = request(&d.path(rel), PdfMode::Ocr);
    req.pages = range(1, 2);
    let r = read_ok(&mut engine(), &req);
    assert_eq!(numbers(&r), [1, 2]);
    assert_eq!(sources(&r), [PageSource::Ocr, PageSource::Ocr]);
    let texts = page_texts(&r);
    assert_reads_well(&truth[0], texts[0], "text page 1 by OCR");
    assert_reads_well(&truth[1], texts[1], "scanned page 2");
    assert!(r.page_info[0].confidence < 100.0, "{:?}", r.page_info[0]);
}

#[test]
fn text_mode_never_ocrs() {
    let d = docs();
    let rel = "docs/mixed.pdf";
    let truth = d.truth_pages(rel);
    let r = read_ok(&mut engine(), &request(&d.path(rel), PdfMode::Text));
    assert_eq!(sources(&r), [PageSource::Text; 4]);
    let texts = page_texts(&r);
    assert_reads_well(&truth[0], texts[0], "page 1");
    assert_reads_well(&truth[2], texts[2], "page 3");
    // The scanned pages have no text layer, and are not read otherwise.
    assert_eq!(texts[1].trim(), "");
    assert_eq!(texts[3].trim(), "");
    assert_eq!(
        r.words,
        (truth[0].split_whitespace().count() + truth[2].split_whitespace().count()) as u64
    );
}

#[test]
fn multipage_tiff_ranges() {
    let d = docs();
    let rel = "docs/multipage.tif";
    let truth = d.truth_pages(rel);
    let mut engine = engine();
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.pages_per_task = 2;
    match document::read(&mut engine, &req).expect("reads") {
        ReadOutput::Split { pages } => assert_eq!(pages, 3),
        ReadOutput::Read(r) => panic!("3 pages over 2 per task were read: {r:?}"),
    }
    req.pages = range(2, 3);
    let r = read_ok(&mut engine, &req);
    assert_eq!(numbers(&r), [2, 3]);
    assert_eq!(sources(&r), [PageSource::Ocr; 2]);
    let texts = page_texts(&r);
    assert_reads_well(&truth[1], texts[0], "page 2");
    assert_reads_well(&truth[2], texts[1], "page 3");
    req.pages = range(3, 4);
    assert_eq!(read_err(&mut engine, &req).reason, FailureReason::Corrupt);
}

#[test]
fn a_jpeg_is_one_page() {
    let dir = scratch();
    let (path, truth) = page_file(dir.path(), "page.jpg", 41, ImageFormat::Jpeg, 0);
    let mut engine = engine();
    let mut req = request(&path, PdfMode::Auto);
    let r = read_ok(&mut engine, &req);
    assert_eq!(numbers(&r), [1]);
    assert_eq!(rotations(&r), [0]);
    assert_reads_well(&truth, &r.text, "jpeg");
    req.pages = range(1, 1);
    assert_eq!(read_ok(&mut engine, &req).text, r.text);
    req.pages = range(2, 2);
    assert_eq!(read_err(&mut engine, &req).reason, FailureReason::Corrupt);
}

#[test]
fn turned_images_are_set_upright() {
    let d = docs();
    let dir = scratch();
    // `sideways.png` is turned 90 degrees clockwise, so it is read after a
    // turn of 270; this one is turned the other way.
    let (ccw, ccw_truth) = page_file(dir.path(), "ccw.png", 43, ImageFormat::Png, 270);
    let cases = [
        (
            d.path("docs/sideways.png"),
            d.truth_pages("docs/sideways.png").remove(0),
            270,
        ),
        (
            d.path("docs/upside-down.png"),
            d.truth_pages("docs/upside-down.png").remove(0),
            180,
        ),
        (ccw, ccw_truth, 90),
    ];
    let mut engine = engine();
    for (path, truth, turn) in cases {
        let r = read_ok(&mut engine, &request(&path, PdfMode::Auto));
        let what = path.display().to_string();
        assert_eq!(rotations(&r), [turn], "{what}");
        assert_reads_well(&truth, &r.text, &what);
    }
}

#[test]
fn a_sideways_pdf_page_is_set_upright_and_auto_rotate_off_leaves_it() {
    let d = docs();
    let mut engine = engine();
    let rel = "docs/sideways.pdf";
    let r = read_ok(&mut engine, &request(&d.path(rel), PdfMode::Auto));
    assert_eq!(sources(&r), [PageSource::Ocr]);
    assert_eq!(rotations(&r), [270]);
    assert_reads_well(&d.truth_pages(rel)[0], &r.text, rel);

    // The switch works: without it the page is read as it lies, badly.
    let rel = "docs/sideways.png";
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.config.auto_rotate = false;
    let r = read_ok(&mut engine, &req);
    assert_eq!(rotations(&r), [0]);
    let e = cer(&d.truth_pages(rel)[0], &r.text);
    assert!(e > 0.5, "a sideways page read as it lies: CER {e:.3}");
}

/// The names in a folder, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn staged(root: &Path, name: &str) -> StagingTarget {
    StagingTarget {
        root: root.to_path_buf(),
        name: name.to_owned(),
    }
}

/// What `program args…` prints; it must succeed.
fn output(program: &str, args: &[&OsStr]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pdf_pages(path: &Path) -> u32 {
    let info = output("pdfinfo", &[path.as_os_str()]);
    info.lines()
        .find_map(|l| l.strip_prefix("Pages:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no page count in {info}"))
}

fn pdf_page_text(path: &Path, page: u32) -> String {
    let n = page.to_string();
    let args: [&OsStr; 8] = [
        "-f".as_ref(),
        n.as_ref(),
        "-l".as_ref(),
        n.as_ref(),
        "-enc".as_ref(),
        "UTF-8".as_ref(),
        path.as_os_str(),
        "-".as_ref(),
    ];
    output("pdftotext", &args)
}

#[test]
fn an_image_stages_its_fragments_and_a_searchable_pdf() {
    let dir = scratch();
    let (path, truth) = page_file(dir.path(), "page.png", 47, ImageFormat::Png, 0);
    let root = dir.path().join("staging");
    std::fs::create_dir(&root).expect("staging root");
    let mut req = request(&path, PdfMode::Auto);
    req.artefacts = Artefact::ALL.to_vec();
    req.staging = Some(staged(&root, "task-1"));
    let r = read_ok(&mut engine(), &req);
    assert_eq!(r.staged.as_deref(), Some("task-1"));
    assert!(!r.text_staged);
    assert_reads_well(&truth, &r.text, "inline text");
    let folder = root.join("task-1");
    assert_eq!(listing(&folder), ["out.hocr", "out.pdf", "out.tsv", "out.xml"]);

    let hocr = std::fs::read_to_string(folder.join("out.hocr")).expect("hocr");
    assert_eq!(hocr.matches("class=\"ocr_page\"").count(), 1, "{hocr}");
    assert!(hocr.matches("ocrx_word").count() > 50);
    assert!(!hocr.contains("<html"), "a fragment, not a document");
    let alto = std::fs::read_to_string(folder.join("out.xml")).expect("alto");
    assert_eq!(alto.matches("<Page ").count(), 1, "{alto}");
    assert!(alto.matches("<String ").count() > 50);
    let tsv = std::fs::read_to_string(folder.join("out.tsv")).expect("tsv");
    let words: Vec<&str> = tsv
        .lines()
        .filter(|l| l.starts_with("5\t"))
        .filter_map(|l| l.split('\t').nth(11))
        .collect();
    assert_reads_well(&truth, &words.join(" "), "tsv words");

    let pdf = folder.join("out.pdf");
    assert_eq!(pdf_pages(&pdf), 1);
    assert_reads_well(&truth, &pdf_page_text(&pdf, 1), "text of out.pdf");
}

#[test]
fn a_pdf_range_stages_a_text_layer_page_per_page() {
    let d = docs();
    let dir = scratch();
    let rel = "docs/mixed.pdf";
    let truth = d.truth_pages(rel);
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.pages = range(2, 3);
    req.artefacts = vec![Artefact::Hocr, Artefact::Alto, Artefact::Tsv, Artefact::Pdf];
    req.staging = Some(staged(dir.path(), "mixed-2-3"));
    let r = read_ok(&mut engine(), &req);
    assert_eq!(sources(&r), [PageSource::Ocr, PageSource::Text]);
    let folder = dir.path().join("mixed-2-3");
    assert_eq!(listing(&folder), [LAYER_FILE, "out.hocr", "out.tsv", "out.xml"]);

    let hocr = std::fs::read_to_string(folder.join("out.hocr")).expect("hocr");
    assert_eq!(hocr.matches("class=\"ocr_page\"").count(), 2);
    let alto = std::fs::read_to_string(folder.join("out.xml")).expect("alto");
    assert_eq!(alto.matches("<Page ").count(), 2);
    let tsv = std::fs::read_to_string(folder.join("out.tsv")).expect("tsv");
    let pages: Vec<&str> = tsv
        .lines()
        .filter(|l| l.starts_with("1\t"))
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    assert_eq!(pages, ["2", "3"], "{tsv}");

    let layer = folder.join(LAYER_FILE);
    assert_eq!(pdf_pages(&layer), 2);
    // The OCR'd page gets invisible text; the text page keeps its own.
    assert_reads_well(&truth[1], &pdf_page_text(&layer, 1), "layer of page 2");
    assert_eq!(pdf_page_text(&layer, 2).trim(), "");
}

#[test]
fn a_staging_folder_already_there_is_left_alone() {
    let d = docs();
    let dir = scratch();
    let root = dir.path().join("staging");
    std::fs::create_dir(&root).expect("root");
    let planted = root.join("taken");
    std::fs::create_dir(&planted).expect("planted folder");
    std::fs::write(planted.join("out.hocr"), "planted").expect("planted file");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("elsewhere");
    std::os::unix::fs::symlink(&elsewhere, root.join("link")).expect("symlink");

    let mut engine = engine();
    let mut req = request(&d.path("docs/born-digital.pdf"), PdfMode::Auto);
    req.artefacts = vec![Artefact::Hocr];
    for name in ["taken", "link"] {
        req.staging = Some(staged(&root, name));
        let err = read_err(&mut engine, &req);
        assert!(err.reason.is_retryable(), "{name}: {err}");
    }
    assert_eq!(listing(&planted), ["out.hocr"]);
    assert_eq!(
        std::fs::read_to_string(planted.join("out.hocr")).expect("read"),
        "planted"
    );
    assert!(listing(&elsewhere).is_empty(), "wrote through the symlink");

    // A fresh name works.
    req.staging = Some(staged(&root, "fresh"));
    let r = read_ok(&mut engine, &req);
    assert_eq!(r.staged.as_deref(), Some("fresh"));
    assert_eq!(listing(&root.join("fresh")), ["out.hocr"]);
}

#[test]
fn a_long_text_is_staged_as_a_file() {
    let dir = scratch();
    let pages: Vec<Page> = (1..=60).map(|p| text_page(&lines(&format!("p{p}"), 60))).collect();
    let path = dir.path().join("long.pdf");
    std::fs::write(&path, pdf_of_pages(&pages)).expect("write");
    let mut engine = engine();

    // Without a staging folder a long text travels inline.
    let inline = read_ok(&mut engine, &request(&path, PdfMode::Text));
    assert!(inline.text.len() > MAX_INLINE_TEXT, "{} bytes", inline.text.len());
    assert!(inline.staged.is_none() && !inline.text_staged);

    let mut req = request(&path, PdfMode::Text);
    req.staging = Some(staged(dir.path(), "long-1"));
    let r = read_ok(&mut engine, &req);
    assert!(r.text_staged);
    assert_eq!(r.text, "");
    assert_eq!(r.staged.as_deref(), Some("long-1"));
    assert_eq!(r.pages, 60);
    let folder = dir.path().join("long-1");
    assert_eq!(listing(&folder), [STAGED_TEXT_FILE]);
    let staged_text = std::fs::read_to_string(folder.join(STAGED_TEXT_FILE)).expect("text.txt");
    assert_eq!(staged_text, inline.text);
    assert!(staged_text.contains("p60 line 60"), "the last page's last line");
}

#[test]
fn broken_pdfs_fail_with_their_reason() {
    let d = docs();
    let mut engine = engine();
    let mut reason = |rel: &str| {
        let err = read_err(&mut engine, &request(&d.path(rel), PdfMode::Auto));
        (err.reason, err.message)
    };
    assert_eq!(reason("docs/bad/encrypted.pdf").0, FailureReason::Encrypted);
    assert_eq!(reason("docs/bad/empty.pdf").0, FailureReason::Empty);
    assert_eq!(reason("docs/bad/truncated.pdf").0, FailureReason::Corrupt);
    let (why, message) = reason("docs/bad/huge-page.pdf");
    assert_eq!(why, FailureReason::TooLarge, "{message}");
    assert!(message.contains("page 1"), "names the page: {message}");
    let (why, message) = reason("docs/bad/not-a-pdf.pdf");
    assert_eq!(why, FailureReason::Unsupported, "{message}");
    assert!(message.contains(".pdf"), "says what the name claimed: {message}");
    assert!(!message.contains("plain text"), "no file contents: {message}");
}

/// Bug: `pdf.rs` refuses every PDF that `pdfinfo` calls encrypted, also
/// one with only an owner password (permissions), which opens without a
/// password and which Poppler reads; a user password is already caught by
/// Poppler's "Incorrect password".
#[test]
/// A PDF encrypted with only an owner password (permissions: no printing,
/// no copying) opens without a password, but skep refuses every encrypted
/// PDF, as OCRmyPDF does: its text and a searchable copy would drop the
/// owner's restrictions. The error says how to decrypt it.
fn a_pdf_with_only_an_owner_password_is_refused_as_encrypted() {
    let d = docs();
    let dir = scratch();
    let rel = "docs/born-digital.pdf";
    let path = dir.path().join("owner-only.pdf");
    let source = d.path(rel);
    let args: [&OsStr; 9] = [
        "--encrypt".as_ref(),
        "".as_ref(),
        "owner-secret".as_ref(),
        "256".as_ref(),
        "--print=none".as_ref(),
        "--extract=n".as_ref(),
        "--".as_ref(),
        source.as_os_str(),
        path.as_os_str(),
    ];
    output("qpdf", &args);
    let err = read_err(&mut engine(), &request(&path, PdfMode::Auto));
    assert_eq!(err.reason, FailureReason::Encrypted, "{err}");
    assert!(err.message.contains("qpdf --decrypt"), "{err}");
}

#[test]
fn a_tiff_whose_pages_loop_is_corrupt() {
    let dir = scratch();
    let path = dir.path().join("loop.tif");
    std::fs::write(&path, looping_tiff()).expect("write");
    let started = Instant::now();
    let err = read_err(&mut engine(), &request(&path, PdfMode::Auto));
    assert_eq!(err.reason, FailureReason::Corrupt, "{err}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}

#[test]
fn broken_office_documents_fail_quickly_with_their_reason() {
    let d = docs();
    let mut engine = engine();
    for (rel, want) in [
        ("office/bad/bomb.docx", FailureReason::TooLarge),
        ("office/bad/laughs.docx", FailureReason::Corrupt),
        ("office/bad/legacy.doc", FailureReason::Unsupported),
        ("office/bad/not-a-zip.docx", FailureReason::Unsupported),
    ] {
        let started = Instant::now();
        let err = read_err(&mut engine, &request(&d.path(rel), PdfMode::Auto));
        assert_eq!(err.reason, want, "{rel}: {err}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{rel}: {:?}",
            started.elapsed()
        );
    }
    // And a good one still reads, one page per slide.
    let rel = "office/slides.pptx";
    let r = read_ok(&mut engine, &request(&d.path(rel), PdfMode::Auto));
    assert_eq!(r.pages as usize, d.truth_pages(rel).len());
    assert_eq!(sources(&r), vec![PageSource::Text; r.pages as usize]);
}

/// Bug: `office.rs` cuts the extracted text into pages at every
/// `"\n\x0c\n"`, so a form feed in a document's own text (`&#12;` in a
/// paragraph) makes pages that are not there: one docx section is read as
/// two pages here, and a small file can claim millions.
#[test]
fn a_form_feed_in_office_text_is_not_a_page_break() {
    let dir = scratch();
    let path = dir.path().join("ff.docx");
    let body = "<w:p><w:r><w:t>First paragraph of the document</w:t></w:r></w:p>\
                <w:p><w:r><w:t>&#12;</w:t></w:r></w:p>\
                <w:p><w:r><w:t>Second paragraph of the document</w:t></w:r></w:p>";
    std::fs::write(&path, docx(body)).expect("write");
    let r = read_ok(&mut engine(), &request(&path, PdfMode::Auto));
    assert!(
        r.text.contains("First paragraph") && r.text.contains("Second paragraph"),
        "{:?}",
        r.text
    );
    assert_eq!(r.pages, 1, "a docx is one section: {:?}", r.page_info);
}

/// Bug: the page count comes from `pdfinfo -f 1 -l <pages_per_task>`,
/// whose output (two lines a page) is capped at 1 MiB; a whole-file read
/// (`pages_per_task` = `MAX_PAGES`, as `recognize_file` and the CLI use)
/// of a PDF of more than ~17,700 pages fails `tooLarge` instead of being
/// read.
#[test]
fn a_long_pdf_read_whole_is_not_refused_for_its_page_list() {
    let dir = scratch();
    let path = dir.path().join("many.pdf");
    std::fs::write(&path, many_empty_pages(20_000)).expect("write");
    let req = request(&path, PdfMode::Text);
    assert_eq!(req.pages_per_task, document::MAX_PAGES);
    let r = read_ok(&mut engine(), &req);
    assert_eq!(r.pages, 20_000);
}

/// Reads `path` on `slot` with `timeout`; it must end in time with a
/// bounded failure.
async fn hostile(slot: &mut OcrSlot, path: &Path, timeout: Duration, allowed: &[FailureReason]) {
    let started = Instant::now();
    let result = slot.read(request(path, PdfMode::Auto), timeout).await;
    let took = started.elapsed();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match result {
        Err(e) => {
            eprintln!("note: {name}: {} after {took:?}", e.reason);
            assert!(allowed.contains(&e.reason), "{name}: {e}");
        }
        Ok(out) => panic!("{name}: must fail, gave {out:?}"),
    }
    assert!(took <= timeout + SLACK, "{name}: took {took:?}");
}

/// The slot still reads a good file, on time.
async fn still_reads(slot: &mut OcrSlot, path: &Path, truth: &str) {
    let started = Instant::now();
    let out = slot
        .read(request(path, PdfMode::Auto), Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("the slot no longer reads: {e}"));
    let ReadOutput::Read(r) = out else {
        panic!("split: {out:?}")
    };
    assert_reads_well(truth, &r.text, "the next task");
    // NB: the slot waits for an abandoned thread before it starts; the
    // helper process it waited on was killed at the deadline.
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
}

#[tokio::test]
async fn hostile_pdfs_end_in_time_and_the_slot_goes_on() {
    use FailureReason::{Corrupt, Timeout, TooLarge};
    let d = docs();
    let dir = scratch();
    let text_rel = "docs/born-digital.pdf";
    let text_truth = d.truth_pages(text_rel).join("\n");
    let cases: Vec<(&str, Vec<u8>, &[FailureReason])> = vec![
        // Poppler saves a graphics state per `q`: it runs out of memory
        // under the helper's address-space limit, or out of time.
        (
            "nested-q.pdf",
            pdf_of_pages(&[flate_page(b"q\n", 5_000_000)]),
            &[Corrupt, Timeout, TooLarge],
        ),
        // 130 MB of drawing operators from ~1 MB.
        (
            "drawing-bomb.pdf",
            pdf_of_pages(&[flate_page(b"0 0 1 1 re f\n", 10_000_000)]),
            &[Timeout],
        ),
        // Forms drawing forms, 10^12 rectangles.
        ("xobject-bomb.pdf", pdf_of_pages(&[xobject_bomb_page()]), &[Timeout]),
        ("lying-count.pdf", lying_count(), &[Corrupt]),
        ("garbage.pdf", garbage_pdf(), &[Corrupt]),
    ];
    let mut slot = OcrSlot::new("hostile");
    for (name, bytes, allowed) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        hostile(&mut slot, &path, HOSTILE_TIMEOUT, allowed).await;
        still_reads(&mut slot, &d.path(text_rel), &text_truth).await;
    }
    assert!(slot.abandoned() <= skep_worker::MAX_ABANDONED);
    // And Tesseract on the slot's thread still reads a page.
    let (png, truth) = page_file(dir.path(), "after.png", 53, ImageFormat::Png, 0);
    still_reads(&mut slot, &png, &truth).await;
}

/// Bug: Poppler takes the looping page tree node for a second page of
/// size 0 x 0; `pdf.rs` renders it (Poppler gives a 1 x 1 image, within
/// the size check's slack) and the whole file fails `unsupported` ("image
/// of 1x1 pixels is too small to read"), a reason for formats skep does
/// not read, instead of `corrupt`.
#[tokio::test]
async fn a_page_tree_loop_is_corrupt() {
    let dir = scratch();
    let path = dir.path().join("page-tree-loop.pdf");
    std::fs::write(&path, page_tree_loop()).expect("write");
    let mut slot = OcrSlot::new("loop");
    hostile(&mut slot, &path, Duration::from_secs(60), &[FailureReason::Corrupt]).await;
}

/// Poppler rebuilds a cross-reference table that is garbage from the
/// objects themselves, and the page reads.
#[test]
fn a_garbage_xref_is_rebuilt() {
    let dir = scratch();
    let text = lines("xref", 12);
    let mut bytes = pdf_of_pages(&[text_page(&text)]);
    let find = |needle: &[u8]| {
        bytes
            .windows(needle.len())
            .rposition(|w| w == needle)
            .expect("in the pdf")
    };
    // NB: `\nxref` is not `startxref`, which follows the trailer; the
    // trailer keeps its line of its own.
    let (from, to) = (find(b"\nxref\n") + 1, find(b"\ntrailer\n"));
    bytes[from..to].iter_mut().for_each(|b| *b = b'#');
    let path = dir.path().join("garbage-xref.pdf");
    std::fs::write(&path, bytes).expect("write");
    let mut req = request(&path, PdfMode::Auto);
    req.deadline = Instant::now() + HOSTILE_TIMEOUT;
    let r = read_ok(&mut engine(), &req);
    assert_eq!(sources(&r), [PageSource::Text]);
    assert_reads_well(&text.join("\n"), &r.text, "garbage-xref.pdf");
}

#[test]
fn a_request_deadline_kills_the_helper() {
    let dir = scratch();
    let path = dir.path().join("drawing-bomb.pdf");
    std::fs::write(&path, pdf_of_pages(&[flate_page(b"0 0 1 1 re f\n", 10_000_000)])).expect("write");
    let mut req = request(&path, PdfMode::Ocr);
    req.deadline = Instant::now() + Duration::from_secs(2);
    let started = Instant::now();
    let err = read_err(&mut engine(), &req);
    assert_eq!(err.reason, FailureReason::Timeout, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2) + SLACK,
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn the_flate_bomb_is_valid_zlib() {
    // A PNG's pixels are zlib data: the image decoder inflating it to the
    // right pixels shows the hostile streams above are what they claim.
    let (w, h) = (64u32, 4096u32);
    let mut row = vec![0u8];
    row.extend((0..w).map(|x| (x * 4) as u8));
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(w.to_be_bytes());
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 0, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    let idat = zlib_repeat(&row, h as usize);
    assert_eq!(
        idat[idat.len() - 4..],
        adler32(&row.repeat(h as usize)).to_be_bytes(),
        "the checksum (which the decoder does not check)"
    );
    assert!(idat.len() < (row.len() * h as usize) / 50, "{} bytes", idat.len());
    png_chunk(&mut png, b"IDAT", &idat);
    png_chunk(&mut png, b"IEND", &[]);
    let img = image::load_from_memory(&png).expect("decodes").into_luma8();
    assert_eq!(img.dimensions(), (w, h));
    assert!(img.rows().all(|r| r.enumerate().all(|(x, p)| p.0[0] == (x * 4) as u8)));
}

/// A PDF of `objects`, numbered from 1 (object 1 is the catalog), with a
/// correct cross-reference table.
fn pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut out = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n".to_vec();
    let mut offsets = Vec::with_capacity(objects.len());
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend(body);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for at in offsets {
        out.extend(format!("{at:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    out.extend(data);
    out.extend(b"\nendstream");
    out
}

/// A page: its content stream, resources, and objects of its own (text
/// only), which the resources and those objects name as `{n}` for the
/// nth, from 0.
struct Page {
    content: Vec<u8>,
    resources: String,
    extra: Vec<Vec<u8>>,
}

/// US Letter pages in one PDF: 1 catalog, 2 page tree, 3 Helvetica, then
/// per page its page object, content stream and extra objects.
fn pdf_of_pages(pages: &[Page]) -> Vec<u8> {
    let mut objects = vec![
        Vec::new(),
        Vec::new(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_vec(),
    ];
    let mut kids = Vec::new();
    for page in pages {
        let first = objects.len() + 1;
        kids.push(format!("{first} 0 R"));
        let extra_at = first + 2;
        let number = |s: &str| -> String {
            (0..page.extra.len()).rev().fold(s.to_owned(), |s, i| {
                s.replace(&format!("{{{i}}}"), &(extra_at + i).to_string())
            })
        };
        objects.push(
            format!(
                "<< /Type /Page /Parent 2 0 R /Contents {} 0 R /Resources << /Font << /F1 3 0 R >> {} >> >>",
                first + 1,
                number(&page.resources)
            )
            .into_bytes(),
        );
        objects.push(page.content.clone());
        for o in &page.extra {
            objects.push(number(&String::from_utf8_lossy(o)).into_bytes());
        }
    }
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>".to_vec();
    objects[1] = format!(
        "<< /Type /Pages /MediaBox [0 0 612 792] /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    )
    .into_bytes();
    pdf(&objects)
}

/// `n` lines of text, each naming itself (`"{tag} line {i} ..."`).
fn lines(tag: &str, n: usize) -> Vec<String> {
    (1..=n)
        .map(|i| format!("{tag} line {i} the quick brown fox jumps over the lazy dog and reads every page it finds"))
        .collect()
}

/// A page of Helvetica text, 9 points on 12.
fn text_page(lines: &[String]) -> Page {
    let mut content = String::from("BT /F1 9 Tf 12 TL 40 760 Td\n");
    for line in lines {
        content.push_str(&format!("({line}) Tj T*\n"));
    }
    content.push_str("ET");
    Page {
        content: stream("", content.as_bytes()),
        resources: String::new(),
        extra: Vec::new(),
    }
}

/// A page whose content stream is `unit` repeated `times`, flate-compressed.
fn flate_page(unit: &[u8], times: usize) -> Page {
    Page {
        content: stream("/Filter /FlateDecode", &zlib_repeat(unit, times)),
        resources: String::new(),
        extra: Vec::new(),
    }
}

/// A page drawing a form that draws the next form 1000 times, four deep,
/// over a rectangle: small, and 10^12 operations to render.
fn xobject_bomb_page() -> Page {
    const DEPTH: usize = 4;
    let form = |body: &str, resources: &str| {
        stream(
            &format!("/Type /XObject /Subtype /Form /BBox [0 0 612 792] /Resources << {resources} >>"),
            body.as_bytes(),
        )
    };
    let calls = "/X Do\n".repeat(1000);
    let mut extra: Vec<Vec<u8>> = (0..DEPTH)
        .map(|i| form(&calls, &format!("/XObject << /X {{{}}} 0 R >>", i + 1)))
        .collect();
    extra.push(form("0 0 1 1 re f", ""));
    Page {
        content: stream("", b"/X Do"),
        resources: "/XObject << /X {0} 0 R >>".to_owned(),
        extra,
    }
}

/// One real page under a page tree that lists itself as a kid.
fn page_tree_loop() -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream("", b"0 0 m 100 100 l S"),
    ])
}

/// One page under a tree whose `/Count` claims a million.
fn lying_count() -> Vec<u8> {
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1000000 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        stream("", b"0 0 m 100 100 l S"),
    ])
}

/// A PDF header over bytes that hold no object, no trailer, no xref.
fn garbage_pdf() -> Vec<u8> {
    let mut out = b"%PDF-1.7\n".to_vec();
    let mut x: u32 = 0x2545_4446;
    out.extend((0..16_384).map(|_| {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (x >> 24) as u8
    }));
    out
}

/// `n` empty pages.
fn many_empty_pages(n: usize) -> Vec<u8> {
    let kids: Vec<String> = (0..n).map(|i| format!("{} 0 R", i + 3)).collect();
    let mut objects = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        format!(
            "<< /Type /Pages /MediaBox [0 0 612 792] /Kids [{}] /Count {n} >>",
            kids.join(" ")
        )
        .into_bytes(),
    ];
    objects.extend(std::iter::repeat_n(b"<< /Type /Page /Parent 2 0 R >>".to_vec(), n));
    pdf(&objects)
}

/// A little-endian TIFF of one 8 x 8 gray page whose directory names
/// itself as the next page's.
fn looping_tiff() -> Vec<u8> {
    const ENTRIES: u16 = 9;
    let data_at = 8 + 2 + 12 * u32::from(ENTRIES) + 4;
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    out.extend(ENTRIES.to_le_bytes());
    // (tag, type: 3 SHORT or 4 LONG, value), in tag order.
    for (tag, kind, value) in [
        (256u16, 3u16, 8u32), // width
        (257, 3, 8),          // height
        (258, 3, 8),          // bits per sample
        (259, 3, 1),          // no compression
        (262, 3, 1),          // black is zero
        (273, 4, data_at),    // strip offset
        (277, 3, 1),          // samples per pixel
        (278, 3, 8),          // rows per strip
        (279, 4, 64),         // strip byte count
    ] {
        out.extend(tag.to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        out.extend(value.to_le_bytes());
    }
    out.extend(8u32.to_le_bytes());
    out.extend([200u8; 64]);
    out
}

/// Zlib data (RFC 1950/1951) that inflates to `times` copies of `unit`:
/// one fixed-Huffman block, the first copy as literals and the rest as
/// 258-byte back-references, so that ~2 bytes inflate to 258.
fn zlib_repeat(unit: &[u8], times: usize) -> Vec<u8> {
    const LENGTH_258: (u32, u32) = (0xc5, 8);
    const END_OF_BLOCK: (u32, u32) = (0, 7);
    assert!(!unit.is_empty() && unit.len() <= 32_768 && times > 0);
    let total = unit.len() * times;
    let mut bits = Bits::default();
    bits.put(1, 1); // last block
    bits.put(1, 2); // fixed Huffman codes
    for &b in unit {
        bits.literal(b);
    }
    let mut at = unit.len();
    while total - at >= 258 {
        bits.code(LENGTH_258);
        bits.distance(unit.len());
        at += 258;
    }
    for i in at..total {
        bits.literal(unit[i % unit.len()]);
    }
    bits.code(END_OF_BLOCK);
    let mut out = vec![0x78, 0x01];
    out.extend(bits.finish());
    out.extend(adler32_repeat(unit, times).to_be_bytes());
    out
}

/// A deflate bit stream: values least significant bit first, Huffman
/// codes most significant bit first.
#[derive(Default)]
struct Bits {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl Bits {
    fn put(&mut self, value: u32, count: u32) {
        for i in 0..count {
            self.acc |= ((value >> i) & 1) << self.n;
            self.n += 1;
            if self.n == 8 {
                self.out.push(self.acc as u8);
                (self.acc, self.n) = (0, 0);
            }
        }
    }

    fn code(&mut self, (code, len): (u32, u32)) {
        for i in (0..len).rev() {
            self.put((code >> i) & 1, 1);
        }
    }

    fn literal(&mut self, b: u8) {
        let b = u32::from(b);
        self.code(if b < 144 { (0x30 + b, 8) } else { (0x190 + b - 144, 9) });
    }

    fn distance(&mut self, d: usize) {
        const BASE: [usize; 30] = [
            1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537, 2049, 3073,
            4097, 6145, 8193, 12289, 16385, 24577,
        ];
        let code = BASE.iter().rposition(|&b| b <= d).expect("distance of at least 1");
        let extra = if code < 4 { 0 } else { code as u32 / 2 - 1 };
        self.code((code as u32, 5));
        self.put((d - BASE[code]) as u32, extra);
    }

    fn finish(mut self) -> Vec<u8> {
        if self.n > 0 {
            self.out.push(self.acc as u8);
        }
        self.out
    }
}

/// The Adler-32 of `times` copies of `unit`, a copy at a time.
fn adler32_repeat(unit: &[u8], times: usize) -> u32 {
    const MOD: u64 = 65_521;
    let p = unit.len() as u64;
    // One copy adds its sum to A, and p * A + sum((p - i) * b_i) to B.
    let sum: u64 = unit.iter().map(|&b| u64::from(b)).sum::<u64>() % MOD;
    let weighted: u64 = unit
        .iter()
        .enumerate()
        .map(|(i, &b)| (p - i as u64) * u64::from(b))
        .sum::<u64>()
        % MOD;
    let (mut a, mut b) = (1u64, 0u64);
    for _ in 0..times {
        b = (b + p % MOD * a + weighted) % MOD;
        a = (a + sum) % MOD;
    }
    ((b << 16) | a) as u32
}

fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    (b << 16) | a
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A Word document whose body is `body` (WordprocessingML paragraphs), as
/// a zip of stored entries.
fn docx(body: &str) -> Vec<u8> {
    const W: &str = "http://schemas.openxmlformats.org/wordprocessingml/2006/main";
    let content_types = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\">\
        <Default Extension=\"rels\" ContentType=\"application/vnd.openxmlformats-package.relationships+xml\"/>\
        <Default Extension=\"xml\" ContentType=\"application/xml\"/>\
        <Override PartName=\"/word/document.xml\" \
        ContentType=\"application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml\"/>\
        </Types>";
    let rels = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
        <Relationships xmlns=\"http://schemas.openxmlformats.org/package/2006/relationships\">\
        <Relationship Id=\"rId1\" \
        Type=\"http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument\" \
        Target=\"word/document.xml\"/></Relationships>";
    let document = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><w:document xmlns:w=\"{W}\"><w:body>{body}</w:body></w:document>"
    );
    stored_zip(&[
        ("[Content_Types].xml", content_types.as_bytes()),
        ("_rels/.rels", rels.as_bytes()),
        ("word/document.xml", document.as_bytes()),
    ])
}

/// A zip archive of `entries`, stored (not compressed).
fn stored_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let (crc, size, name_len) = (crc32(data), data.len() as u32, name.len() as u16);
        // version needed, flags, method (stored), time, date
        let common = |v: &mut Vec<u8>| {
            v.extend(20u16.to_le_bytes());
            v.extend(0u16.to_le_bytes());
            v.extend(0u16.to_le_bytes());
            v.extend(0u16.to_le_bytes());
            v.extend(0x21u16.to_le_bytes());
            v.extend(crc.to_le_bytes());
            v.extend(size.to_le_bytes());
            v.extend(size.to_le_bytes());
            v.extend(name_len.to_le_bytes());
            v.extend(0u16.to_le_bytes());
        };
        out.extend(b"PK\x03\x04");
        common(&mut out);
        out.extend(name.as_bytes());
        out.extend(*data);
        central.extend(b"PK\x01\x02");
        central.extend(20u16.to_le_bytes()); // made by
        common(&mut central);
        central.extend([0u8; 6]); // comment length, disk, internal attributes
        central.extend(0u32.to_le_bytes()); // external attributes
        central.extend(offset.to_le_bytes());
        central.extend(name.as_bytes());
    }
    let (at, len, n) = (out.len() as u32, central.len() as u32, entries.len() as u16);
    out.extend(central);
    out.extend(b"PK\x05\x06");
    out.extend([0u8; 4]); // disk numbers
    out.extend(n.to_le_bytes());
    out.extend(n.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(at.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    out
}

/// A PDF over `pages_per_task` that needs no OCR (a text layer on every
/// page) is read whole rather than split: splitting spreads OCR, and there
/// is none; in `ocr` mode the same file is split.
#[test]
fn a_long_pdf_needing_no_ocr_is_read_whole() {
    let d = docs();
    let rel = "docs/born-digital.pdf";
    let mut req = request(&d.path(rel), PdfMode::Auto);
    req.pages_per_task = 1;
    let r = read_ok(&mut engine(), &req);
    assert_eq!(numbers(&r), [1, 2, 3]);
    assert_eq!(sources(&r), [PageSource::Text; 3]);
    let truth = d.truth_pages(rel);
    for (i, text) in page_texts(&r).iter().enumerate() {
        assert_reads_well(&truth[i], text, &format!("page {}", i + 1));
    }
    let mut ocr = request(&d.path(rel), PdfMode::Ocr);
    ocr.pages_per_task = 1;
    match document::read(&mut engine(), &ocr).expect("reads") {
        ReadOutput::Split { pages } => assert_eq!(pages, 3),
        ReadOutput::Read(r) => panic!("ocr mode must split: {r:?}"),
    }
}

/// A file that needs no OCR loads no engine: an empty file, one that is
/// not a document, a broken one and an Office document are read with an
/// engine maker that fails the test if it is called.
#[test]
fn files_that_need_no_ocr_load_no_engine() {
    let d = docs();
    let dir = scratch();
    let empty = dir.path().join("empty.png");
    std::fs::write(&empty, b"").expect("write");
    let text = dir.path().join("text.png");
    std::fs::write(&text, b"plain words, not an image").expect("write");
    fn no_engine<'a>() -> Result<&'a mut Engine, OcrError> {
        panic!("an engine was made")
    }
    for (path, want) in [
        (empty, Some(FailureReason::Empty)),
        (text, Some(FailureReason::Unsupported)),
        (d.path("office/bad/laughs.docx"), Some(FailureReason::Corrupt)),
        (d.path("office/slides.pptx"), None),
    ] {
        let got = document::read_with(no_engine, &request(&path, PdfMode::Auto));
        match (got, want) {
            (Err(e), Some(want)) => assert_eq!(e.reason, want, "{}: {e}", path.display()),
            (Ok(ReadOutput::Read(r)), None) => assert!(r.pages > 0, "{}", path.display()),
            (other, want) => panic!("{}: {other:?}, wanted {want:?}", path.display()),
        }
    }
}
