//! A small, namespace-resolved element tree built from the decoded text with quick-xml.
//!
//! Only elements in the BPMN model namespace and the Camunda 8 (`zeebe:`) namespace are kept,
//! and only below a kept parent: diagram interchange (BPMNDI) and foreign vendor extensions are
//! read and checked for well-formedness, then dropped. Nodes live in one arena and link to
//! their first child and next sibling, so building the tree allocates little.
//!
//! Entities: the five predefined ones and character references are expanded. Nothing declared
//! in a DOCTYPE is ever expanded or fetched: a reference to any other entity is an error.

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::limits::{XML_DEPTH_MAX, XML_ELEMENTS_MAX};

/// BPMN 2.0 model namespace.
pub const BPMN_NAMESPACE: &str = "http://www.omg.org/spec/BPMN/20100524/MODEL";
/// The namespace used by pre-release BPMN 2.0 tools; accepted as a synonym.
pub const BPMN_PRERELEASE_NAMESPACE: &str = "http://schema.omg.org/spec/BPMN/2.0";
/// Camunda 8 extension namespace (`zeebe:` prefix in Camunda Modeler output).
pub const ZEEBE_NAMESPACE: &str = "http://camunda.org/schema/zeebe/1.0";
const XSI_NAMESPACE: &str = "http://www.w3.org/2001/XMLSchema-instance";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ns {
    Bpmn,
    Zeebe,
    Xsi,
    Other,
    /// No namespace: unprefixed attributes, or elements with no default namespace in scope.
    None,
}

impl Ns {
    fn of(uri: &str) -> Ns {
        match uri {
            BPMN_NAMESPACE | BPMN_PRERELEASE_NAMESPACE => Ns::Bpmn,
            ZEEBE_NAMESPACE => Ns::Zeebe,
            XSI_NAMESPACE => Ns::Xsi,
            _ => Ns::Other,
        }
    }
}

pub(crate) const NONE: u32 = u32::MAX;

pub(crate) struct Attr {
    pub ns: Ns,
    pub local: Box<str>,
    pub value: String,
}

pub(crate) struct Node {
    pub ns: Ns,
    /// The namespace URI, kept only for the root so that a wrong root can be named.
    pub uri: Option<Box<str>>,
    pub local: Box<str>,
    /// Byte offset of the `<` of the start tag in the decoded text.
    pub offset: u32,
    attrs_start: u32,
    attrs_end: u32,
    first_child: u32,
    next_sibling: u32,
    /// Character data, for the few elements whose text matters (expressions, timers).
    pub text: Option<String>,
}

pub(crate) struct Document {
    nodes: Vec<Node>,
    attrs: Vec<Attr>,
}

#[derive(Debug)]
pub(crate) struct DomError {
    pub offset: usize,
    pub message: String,
    pub limit: bool,
}

impl Document {
    pub(crate) fn root(&self) -> usize {
        0
    }

    pub(crate) fn node(&self, index: usize) -> &Node {
        &self.nodes[index]
    }

    /// How many elements are kept; indexes `0..len()` are in document order.
    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn children(&self, index: usize) -> Children<'_> {
        Children {
            document: self,
            next: self.nodes[index].first_child,
        }
    }

    pub(crate) fn attrs(&self, index: usize) -> &[Attr] {
        let node = &self.nodes[index];
        &self.attrs[node.attrs_start as usize..node.attrs_end as usize]
    }

    /// The value of the attribute `local` in namespace `ns` (use [`Ns::None`] for plain ones).
    pub(crate) fn attr(&self, index: usize, ns: Ns, local: &str) -> Option<&str> {
        self.attrs(index)
            .iter()
            .find(|attr| attr.ns == ns && &*attr.local == local)
            .map(|attr| attr.value.as_str())
    }
}

pub(crate) struct Children<'d> {
    document: &'d Document,
    next: u32,
}

impl Iterator for Children<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.next == NONE {
            return None;
        }
        let index = self.next as usize;
        self.next = self.document.nodes[index].next_sibling;
        Some(index)
    }
}

/// Elements whose character data is kept.
fn keeps_text(local: &str) -> bool {
    matches!(
        local,
        "conditionExpression"
            | "condition"
            | "timeDuration"
            | "timeDate"
            | "timeCycle"
            | "completionCondition"
            | "loopCardinality"
            | "script"
            | "documentation"
    )
}

struct Frame {
    /// The kept node for this element, or `NONE` when the element is not kept.
    node: u32,
    last_child: u32,
    keeps_text: bool,
}

pub(crate) fn parse(text: &str) -> Result<Document, DomError> {
    check_declaration(text)?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;
    reader.config_mut().check_comments = true;
    let mut document = Document {
        nodes: Vec::new(),
        attrs: Vec::new(),
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut root_done = false;
    loop {
        let offset = reader.buffer_position() as usize;
        let event = match reader.read_resolved_event() {
            Ok((resolved, event)) => {
                let uri = resolved_uri(&resolved);
                let ns = match resolved {
                    ResolveResult::Bound(namespace) => Some(Ns::of(namespace.0)),
                    ResolveResult::Unbound => Some(Ns::None),
                    ResolveResult::Unknown(prefix) => {
                        if matches!(event, Event::Start(_) | Event::Empty(_)) {
                            return Err(xml_error(
                                offset,
                                format!(
                                    "the prefix `{prefix}` is not bound to a namespace \
                                     (no xmlns:{prefix}=\"...\" in scope)"
                                ),
                            ));
                        }
                        None
                    }
                };
                (ns, uri, event)
            }
            Err(error) => {
                return Err(xml_error(
                    reader.error_position() as usize,
                    error.to_string(),
                ));
            }
        };
        let (ns, uri, event) = event;
        match event {
            Event::Start(start) | Event::Empty(start) if root_done && stack.is_empty() => {
                let _ = start;
                return Err(xml_error(
                    offset,
                    "a second root element; a document has one".into(),
                ));
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let is_start = matches!(event, Event::Start(_));
                let ns = ns.expect("unknown prefixes were rejected above");
                open_element(
                    &reader,
                    &mut document,
                    &mut stack,
                    start,
                    ns,
                    uri,
                    offset,
                    is_start,
                )?;
                if stack.is_empty() {
                    root_done = true;
                }
            }
            Event::End(_) => {
                stack.pop();
                if stack.is_empty() {
                    root_done = true;
                }
            }
            Event::Text(text) => {
                let content = text.xml10_content();
                append_text(&mut document, &stack, offset, &content)?;
            }
            Event::CData(data) => {
                if stack.is_empty() {
                    return Err(xml_error(offset, "CDATA outside the root element".into()));
                }
                let content = data.xml10_content();
                append_text(&mut document, &stack, offset, &content)?;
            }
            Event::GeneralRef(reference) => {
                let replacement = resolve_reference(&reference, offset)?;
                if stack.is_empty() {
                    return Err(xml_error(
                        offset,
                        "a reference outside the root element".into(),
                    ));
                }
                let mut buffer = [0u8; 4];
                append_text(
                    &mut document,
                    &stack,
                    offset,
                    replacement.encode_utf8(&mut buffer),
                )?;
            }
            Event::Decl(_) if offset != 0 => {
                return Err(xml_error(
                    offset,
                    "an XML declaration is only allowed at the very start".into(),
                ));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
            Event::Eof => {
                if let Some(frame) = stack.last() {
                    let message = match frame.node {
                        NONE => "the document ends before all elements are closed".to_string(),
                        node => format!(
                            "the document ends before <{}> is closed",
                            document.nodes[node as usize].local
                        ),
                    };
                    return Err(xml_error(text.len(), message));
                }
                if !root_done {
                    return Err(xml_error(0, "the document has no root element".into()));
                }
                return Ok(document);
            }
        }
    }
}

fn resolved_uri(resolved: &ResolveResult<'_>) -> Option<Box<str>> {
    match resolved {
        ResolveResult::Bound(namespace) => Some(namespace.0.into()),
        _ => None,
    }
}

#[allow(clippy::too_many_arguments)]
fn open_element(
    reader: &NsReader<&[u8]>,
    document: &mut Document,
    stack: &mut Vec<Frame>,
    start: &BytesStart<'_>,
    ns: Ns,
    uri: Option<Box<str>>,
    offset: usize,
    is_start: bool,
) -> Result<(), DomError> {
    let qname = start.name().0;
    check_name(qname, offset, "element")?;
    if stack.len() >= XML_DEPTH_MAX {
        return Err(DomError {
            offset,
            message: format!("elements nest deeper than XML_DEPTH_MAX ({XML_DEPTH_MAX})"),
            limit: true,
        });
    }
    let parent = stack.last();
    let keep = match parent {
        None => true,
        Some(frame) => frame.node != NONE && matches!(ns, Ns::Bpmn | Ns::Zeebe),
    };
    let attrs_start = document.attrs.len() as u32;
    for attr in start.attributes() {
        let attr = attr.map_err(|error| xml_error(offset, format!("bad attribute: {error}")))?;
        let key = attr.key.0;
        check_name(key, offset, "attribute")?;
        if key == "xmlns" || key.starts_with("xmlns:") {
            continue;
        }
        let (resolved, local) = reader.resolver().resolve_attribute(attr.key);
        let attr_ns = match resolved {
            ResolveResult::Bound(namespace) => Ns::of(namespace.0),
            ResolveResult::Unbound => Ns::None,
            ResolveResult::Unknown(prefix) => {
                return Err(xml_error(
                    offset,
                    format!("attribute `{key}`: the prefix `{prefix}` is not bound to a namespace"),
                ));
            }
        };
        let value = attr
            .normalized_value_with(quick_xml::XmlVersion::Implicit1_0, 1, predefined_entity)
            .map_err(|error| {
                xml_error(
                    offset,
                    format!("attribute `{key}`: {error} (DOCTYPE entities are never expanded)"),
                )
            })?;
        if keep {
            document.attrs.push(Attr {
                ns: attr_ns,
                local: local.into_inner().into(),
                value: value.into_owned(),
            });
        }
    }
    let mut node_index = NONE;
    if keep {
        if document.nodes.len() >= XML_ELEMENTS_MAX {
            return Err(DomError {
                offset,
                message: format!("more than XML_ELEMENTS_MAX ({XML_ELEMENTS_MAX}) elements"),
                limit: true,
            });
        }
        let local = start.local_name();
        node_index = document.nodes.len() as u32;
        let keeps_text = keeps_text(local.as_ref());
        document.nodes.push(Node {
            ns,
            uri: if stack.is_empty() { uri } else { None },
            local: local.into_inner().into(),
            offset: offset as u32,
            attrs_start,
            attrs_end: document.attrs.len() as u32,
            first_child: NONE,
            next_sibling: NONE,
            text: keeps_text.then(String::new),
        });
        if let Some(frame) = stack.last_mut() {
            if frame.last_child == NONE {
                document.nodes[frame.node as usize].first_child = node_index;
            } else {
                document.nodes[frame.last_child as usize].next_sibling = node_index;
            }
            frame.last_child = node_index;
        }
    }
    if is_start {
        let keeps_text = node_index != NONE && document.nodes[node_index as usize].text.is_some();
        stack.push(Frame {
            node: node_index,
            last_child: NONE,
            keeps_text,
        });
    }
    Ok(())
}

fn append_text(
    document: &mut Document,
    stack: &[Frame],
    offset: usize,
    content: &str,
) -> Result<(), DomError> {
    match stack.last() {
        None => {
            if content.trim().is_empty() {
                Ok(())
            } else {
                Err(xml_error(offset, "text outside the root element".into()))
            }
        }
        Some(frame) if frame.keeps_text => {
            let text = document.nodes[frame.node as usize].text.as_mut();
            text.expect("frames that keep text have a text buffer")
                .push_str(content);
            Ok(())
        }
        Some(_) => Ok(()),
    }
}

fn predefined_entity(name: &str) -> Option<&'static str> {
    match name {
        "lt" => Some("<"),
        "gt" => Some(">"),
        "amp" => Some("&"),
        "apos" => Some("'"),
        "quot" => Some("\""),
        _ => None,
    }
}

fn resolve_reference(
    reference: &quick_xml::events::BytesRef<'_>,
    offset: usize,
) -> Result<char, DomError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(character)) => Ok(character),
            Ok(None) | Err(_) => Err(xml_error(
                offset,
                format!("invalid character reference &{};", &**reference),
            )),
        };
    }
    match predefined_entity(reference) {
        Some(replacement) => Ok(replacement.chars().next().expect("non-empty replacement")),
        None => Err(xml_error(
            offset,
            format!(
                "undefined entity &{};: only the predefined XML entities are expanded, never \
                 entities declared in a DOCTYPE",
                &**reference
            ),
        )),
    }
}

/// Checks an element or attribute name against the XML Name production (ASCII part strictly;
/// every non-ASCII character is accepted as a name character).
fn check_name(name: &str, offset: usize, what: &str) -> Result<(), DomError> {
    // One pass over the bytes: this runs for every element and attribute of the document.
    let mut colons = 0;
    let mut at_part_start = true;
    let mut well_formed = !name.is_empty();
    for &byte in name.as_bytes() {
        if byte == b':' {
            colons += 1;
            well_formed &= !at_part_start;
            at_part_start = true;
        } else if at_part_start {
            well_formed &= byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80;
            at_part_start = false;
        } else {
            well_formed &=
                byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'-' | b'.') || byte >= 0x80;
        }
    }
    if well_formed && colons <= 1 && !at_part_start {
        Ok(())
    } else {
        Err(xml_error(
            offset,
            format!("`{name}` is not a valid XML {what} name"),
        ))
    }
}

/// Checks the XML declaration, which quick-xml reads leniently: `version` must come first, and
/// pseudo-attributes must be separated by white space.
fn check_declaration(text: &str) -> Result<(), DomError> {
    let Some(rest) = text.strip_prefix("<?xml") else {
        return Ok(());
    };
    if !rest.starts_with(|c: char| c.is_ascii_whitespace()) {
        // `<?xml-stylesheet ...?>` and the like are processing instructions, not declarations.
        return Ok(());
    }
    let Some(end) = rest.find("?>") else {
        return Err(xml_error(
            0,
            "the XML declaration is not closed with `?>`".into(),
        ));
    };
    let mut body = &rest[..end];
    let mut names = Vec::new();
    loop {
        let trimmed = body.trim_start();
        if trimmed.is_empty() {
            break;
        }
        if trimmed.len() == body.len() {
            return Err(xml_error(
                0,
                "the XML declaration is not well-formed: pseudo-attributes must be separated \
                 by white space"
                    .into(),
            ));
        }
        let Some(equals) = trimmed.find('=') else {
            return Err(xml_error(
                0,
                "the XML declaration is not well-formed".into(),
            ));
        };
        let name = trimmed[..equals].trim_end();
        let value = trimmed[equals + 1..].trim_start();
        let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'');
        let Some(quote) = quote else {
            return Err(xml_error(
                0,
                "the XML declaration has an unquoted value".into(),
            ));
        };
        let Some(close) = value[1..].find(quote) else {
            return Err(xml_error(
                0,
                "the XML declaration has an unclosed value".into(),
            ));
        };
        names.push(name.to_string());
        body = &value[1 + close + 1..];
    }
    let order_ok = matches!(
        names.iter().map(String::as_str).collect::<Vec<_>>()[..],
        ["version"]
            | ["version", "encoding"]
            | ["version", "standalone"]
            | ["version", "encoding", "standalone"]
    );
    if order_ok {
        Ok(())
    } else {
        Err(xml_error(
            0,
            format!(
                "the XML declaration is not well-formed: expected version, then optional \
                 encoding and standalone, found {}",
                names.join(", ")
            ),
        ))
    }
}

fn xml_error(offset: usize, message: String) -> DomError {
    DomError {
        offset,
        message,
        limit: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Document {
        match parse(text) {
            Ok(document) => document,
            Err(error) => panic!("unexpected error: {error:?}"),
        }
    }

    fn parse_err(text: &str) -> DomError {
        match parse(text) {
            Ok(_) => panic!("expected an error for {text}"),
            Err(error) => error,
        }
    }

    #[test]
    fn keeps_bpmn_and_zeebe_drops_the_rest() {
        let document = parse_ok(
            r#"<?xml version="1.0" encoding="UTF-8"?>
            <bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
                xmlns:zeebe="http://camunda.org/schema/zeebe/1.0" xmlns:di="urn:di">
              <bpmn:process id="p" isExecutable="true">
                <bpmn:extensionElements><zeebe:taskDefinition type="a &amp; b"/>
                  <other xmlns="urn:x"><bpmn:task id="hidden"/></other>
                </bpmn:extensionElements>
              </bpmn:process>
              <di:diagram><bpmn:task id="also-hidden"/></di:diagram>
            </bpmn:definitions>"#,
        );
        assert_eq!(
            document.len(),
            4,
            "definitions, process, extensionElements, taskDefinition"
        );
        let process = document.children(0).next().expect("process");
        assert_eq!(document.attr(process, Ns::None, "id"), Some("p"));
        let extensions = document
            .children(process)
            .next()
            .expect("extensionElements");
        let task_definition = document
            .children(extensions)
            .next()
            .expect("taskDefinition");
        assert_eq!(document.node(task_definition).ns, Ns::Zeebe);
        assert_eq!(
            document.attr(task_definition, Ns::None, "type"),
            Some("a & b")
        );
    }

    #[test]
    fn text_of_expressions_is_kept_with_entities_expanded() {
        let document = parse_ok(
            "<definitions xmlns=\"http://www.omg.org/spec/BPMN/20100524/MODEL\">\
             <conditionExpression>=a &lt; b<![CDATA[ and c]]>&#x21;</conditionExpression>\
             </definitions>",
        );
        let condition = document.children(0).next().expect("condition");
        assert_eq!(
            document.node(condition).text.as_deref(),
            Some("=a < b and c!")
        );
    }

    #[test]
    fn rejects_what_is_not_well_formed() {
        let cases = [
            ("<a><b></a>", "expected `</b>`"),
            ("<a>", "closed"),
            ("<a x=\"1\" x=\"2\"/>", "attribute"),
            ("<p:a/>", "prefix"),
            ("<a p:x=\"1\"/>", "prefix"),
            ("<a/><b/>", "second root"),
            ("<a>&xxe;</a>", "undefined entity"),
            ("<a x=\"&xxe;\"/>", "entities"),
            (
                "<?xml version=\"1.0\"encoding=\"UTF-8\"?><a/>",
                "white space",
            ),
            ("<a .b=\"1\"/>", "not a valid XML attribute name"),
            ("<foo //>", "attribute"),
            ("", "no root"),
            ("text<a/>", "outside"),
        ];
        for (text, needle) in cases {
            let error = parse_err(text);
            assert!(
                error.message.contains(needle),
                "{text:?}: expected {needle:?} in {:?}",
                error.message
            );
        }
    }

    #[test]
    fn names_follow_the_xml_name_rules() {
        for good in [
            "a",
            "bpmn:process",
            "_x",
            "a-b.c_d1",
            "\u{e4}rger",
            "x:\u{e4}",
        ] {
            assert!(check_name(good, 0, "element").is_ok(), "{good:?}");
        }
        for bad in [
            "", ":a", "a:", "a:b:c", "1a", ".a", "-a", "a b", "a:1b", "a/",
        ] {
            assert!(check_name(bad, 0, "element").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn depth_limit_is_enforced() {
        let text = format!(
            "{}{}",
            "<a>".repeat(XML_DEPTH_MAX + 1),
            "</a>".repeat(XML_DEPTH_MAX + 1)
        );
        let error = parse_err(&text);
        assert!(error.limit);
        assert!(error.message.contains("XML_DEPTH_MAX"));
    }

    #[test]
    fn doctype_entities_are_not_expanded() {
        let text = "<?xml version=\"1.0\"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM \"/etc/passwd\">]>\n\
                    <a>&xxe;</a>";
        let error = parse_err(text);
        assert!(error.message.contains("never"), "{}", error.message);
    }
}
