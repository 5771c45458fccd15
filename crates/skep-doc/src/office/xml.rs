//! Bounded XML events with namespaces resolved.
//!
//! Guarantees, whatever the input: nesting deeper than `max_depth`, more
//! than `max_elements` elements (counted over the whole document) or one
//! token (a text node, a tag) longer than `max_token_bytes` fail with
//! `TooLarge`; a document type declaration with an internal subset (where
//! entities are declared) fails with `Corrupt`, and so does any entity
//! reference other than the five predefined ones and character
//! references: no entity is ever expanded, no external resource ever read.
//! Only UTF-8 is read.

use std::borrow::Cow;
use std::io::{self, BufReader, Read};

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{NamespaceResolver, ResolveResult};
use quick_xml::reader::NsReader;

use super::archive::io_to_doc;
use super::limits::Meter;
use crate::DocError;

const READ_BUFFER: usize = 64 << 10;

/// The namespaces the extractors look at (transitional and strict OOXML
/// spellings map to the same value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ns {
    /// WordprocessingML main.
    W,
    /// SpreadsheetML main.
    S,
    /// PresentationML main.
    P,
    /// DrawingML main.
    A,
    /// Office document relationships (`r:id` attributes).
    R,
    /// Markup compatibility (`mc:AlternateContent`).
    Mc,
    /// OPC package relationships (`.rels` parts).
    PkgRel,
    /// OPC content types.
    ContentTypes,
    Office,
    Text,
    Table,
    Draw,
    Presentation,
    Manifest,
    Svg,
    /// No namespace.
    None,
    Other,
}

impl Ns {
    fn of(uri: &str) -> Self {
        match uri {
            "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
            | "http://purl.oclc.org/ooxml/wordprocessingml/main" => Ns::W,
            "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
            | "http://purl.oclc.org/ooxml/spreadsheetml/main" => Ns::S,
            "http://schemas.openxmlformats.org/presentationml/2006/main"
            | "http://purl.oclc.org/ooxml/presentationml/main" => Ns::P,
            "http://schemas.openxmlformats.org/drawingml/2006/main" | "http://purl.oclc.org/ooxml/drawingml/main" => {
                Ns::A
            }
            "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
            | "http://purl.oclc.org/ooxml/officeDocument/relationships" => Ns::R,
            "http://schemas.openxmlformats.org/markup-compatibility/2006" => Ns::Mc,
            "http://schemas.openxmlformats.org/package/2006/relationships" => Ns::PkgRel,
            "http://schemas.openxmlformats.org/package/2006/content-types" => Ns::ContentTypes,
            "urn:oasis:names:tc:opendocument:xmlns:office:1.0" => Ns::Office,
            "urn:oasis:names:tc:opendocument:xmlns:text:1.0" => Ns::Text,
            "urn:oasis:names:tc:opendocument:xmlns:table:1.0" => Ns::Table,
            "urn:oasis:names:tc:opendocument:xmlns:drawing:1.0" => Ns::Draw,
            "urn:oasis:names:tc:opendocument:xmlns:presentation:1.0" => Ns::Presentation,
            "urn:oasis:names:tc:opendocument:xmlns:manifest:1.0" => Ns::Manifest,
            "urn:oasis:names:tc:opendocument:xmlns:svg-compatible:1.0" => Ns::Svg,
            _ => Ns::Other,
        }
    }

    fn resolved(result: ResolveResult<'_>) -> Self {
        match result {
            ResolveResult::Bound(ns) => Ns::of(ns.0),
            ResolveResult::Unbound => Ns::None,
            ResolveResult::Unknown(_) => Ns::Other,
        }
    }
}

/// One event. Empty elements come as a `Start` and an `End`.
pub(crate) enum Ev<'x> {
    Start(Start<'x>),
    End,
    /// Character data, entity and character references resolved.
    Text(Cow<'x, str>),
    /// Comments, processing instructions, declarations.
    Other,
    Eof,
}

/// A start tag.
pub(crate) struct Start<'x> {
    pub ns: Ns,
    el: BytesStart<'x>,
    resolver: &'x NamespaceResolver,
}

impl Start<'_> {
    pub fn is(&self, ns: Ns, local: &str) -> bool {
        self.ns == ns && self.local() == local
    }

    pub fn local(&self) -> &str {
        let name = self.el.name().0;
        name.rsplit_once(':').map_or(name, |(_, local)| local)
    }

    /// The value of the attribute `local` in namespace `ns` (`Ns::None`
    /// for an unprefixed attribute), references resolved.
    pub fn attr(&self, ns: Ns, local: &str) -> Result<Option<Cow<'_, str>>, DocError> {
        for attr in self.el.attributes().with_checks(false) {
            let attr = attr.map_err(|_| DocError::corrupt("malformed XML attribute"))?;
            let (attr_ns, attr_local) = self.resolver.resolve_attribute(attr.key);
            if attr_local.as_ref() == local && Ns::resolved(attr_ns) == ns {
                let value = attr
                    .normalized_value(XmlVersion::Implicit1_0)
                    .map_err(|_| DocError::corrupt("undefined entity in an XML attribute"))?;
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

/// Bounded namespace-aware XML events from one part.
pub(crate) struct Xml<'m, R: Read> {
    reader: NsReader<BufReader<TokenGuard<R>>>,
    buf: Vec<u8>,
    meter: &'m Meter,
    depth: usize,
    /// The namespace URI last resolved, and what it is: elements of one
    /// namespace follow each other.
    last_uri: String,
    last_ns: Ns,
}

impl<'m, R: Read> Xml<'m, R> {
    pub fn new(source: R, meter: &'m Meter) -> Self {
        let guard = TokenGuard {
            inner: source,
            run: 0,
            max: meter.limits.max_token_bytes,
        };
        let mut reader = NsReader::from_reader(BufReader::with_capacity(READ_BUFFER, guard));
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.trim_text(false);
        Self {
            reader,
            buf: Vec::new(),
            meter,
            depth: 0,
            last_uri: String::new(),
            last_ns: Ns::None,
        }
    }

    pub fn next(&mut self) -> Result<Ev<'_>, DocError> {
        self.buf.clear();
        let event = self.reader.read_event_into(&mut self.buf).map_err(xml_error)?;
        Ok(match event {
            Event::Start(el) => {
                self.depth += 1;
                if self.depth > self.meter.limits.max_depth {
                    return Err(DocError::too_large(format!(
                        "XML nests deeper than {} elements",
                        self.meter.limits.max_depth
                    )));
                }
                self.meter.element()?;
                let resolver = self.reader.resolver();
                let ns = match resolver.resolve_element(el.name()).0 {
                    ResolveResult::Bound(uri) => {
                        if uri.0 != self.last_uri {
                            self.last_uri.clear();
                            self.last_uri.push_str(uri.0);
                            self.last_ns = Ns::of(uri.0);
                        }
                        self.last_ns
                    }
                    other => Ns::resolved(other),
                };
                Ev::Start(Start { ns, el, resolver })
            }
            Event::End(_) => {
                self.depth = self.depth.saturating_sub(1);
                Ev::End
            }
            Event::Text(text) => Ev::Text(text.xml10_content()),
            Event::CData(text) => Ev::Text(text.xml10_content()),
            Event::GeneralRef(reference) => {
                if let Some(c) = reference
                    .resolve_char_ref()
                    .map_err(|_| DocError::corrupt("bad XML character reference"))?
                {
                    Ev::Text(Cow::Owned(c.to_string()))
                } else {
                    Ev::Text(Cow::Borrowed(predefined_entity(&reference)?))
                }
            }
            Event::DocType(doctype) => {
                if doctype.contains('[') {
                    return Err(DocError::corrupt(
                        "XML declares a document type (entities are not read)",
                    ));
                }
                Ev::Other
            }
            Event::Eof => {
                if self.depth != 0 {
                    return Err(DocError::corrupt("XML ends inside an element"));
                }
                Ev::Eof
            }
            Event::Empty(_) | Event::Comment(_) | Event::Decl(_) | Event::PI(_) => Ev::Other,
        })
    }

    /// Skips the rest of the element whose start was the last event.
    pub fn skip(&mut self) -> Result<(), DocError> {
        let outer = self.depth.saturating_sub(1);
        while self.depth > outer {
            if let Ev::Eof = self.next()? {
                return Err(DocError::corrupt("XML ends inside an element"));
            }
        }
        Ok(())
    }
}

fn predefined_entity(name: &str) -> Result<&'static str, DocError> {
    Ok(match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        _ => return Err(DocError::corrupt("XML refers to an undefined entity")),
    })
}

fn xml_error(error: quick_xml::Error) -> DocError {
    match error {
        quick_xml::Error::Io(io) => io_to_doc(&io),
        _ => DocError::corrupt("malformed XML"),
    }
}

/// Fails a read once more than `max` bytes have passed without a `<` or
/// `>`: the XML reader buffers a whole text node or tag.
struct TokenGuard<R> {
    inner: R,
    run: usize,
    max: usize,
}

impl<R: Read> Read for TokenGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let chunk = &buf[..n];
        self.run = match chunk.iter().rposition(|&b| b == b'<' || b == b'>') {
            Some(at) => n - at - 1,
            None => self.run.saturating_add(n),
        };
        if self.run > self.max {
            return Err(io::Error::other(DocError::too_large(format!(
                "XML has a token longer than {} bytes",
                self.max
            ))));
        }
        Ok(n)
    }
}
