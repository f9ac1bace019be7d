"""OpenNebula template text and XML: parsing, oned's merge rule, rendering order."""

from __future__ import annotations

import pytest

from sim.template import Template, TemplateError, parse_template


def test_single_and_vector_attributes_with_quotes_and_escapes():
    tmpl = parse_template(
        """
        # a comment line
        NAME = "web server"
        memory=1024
        DESCRIPTION = "say \\"hi\\""
        NIC = [ NETWORK = "public", ip = 10.0.0.1,
                MODEL="virtio" ]
        EMPTY =
        ARGS = "$TEMPLATE"
        """
    )
    assert tmpl.get("NAME") == "web server"
    assert tmpl.get("MEMORY") == "1024"  # names are upper-cased as oned does
    assert tmpl.get("DESCRIPTION") == 'say "hi"'
    assert tmpl.get("NIC") == {"NETWORK": "public", "IP": "10.0.0.1", "MODEL": "virtio"}
    assert tmpl.get("EMPTY") == ""
    assert tmpl.get("ARGS") == "$TEMPLATE"


def test_repeated_attributes_are_kept_in_order():
    tmpl = parse_template('DISK = [ SIZE = "1" ]\nDISK = [ SIZE = "2" ]\n')
    assert tmpl.get_all("DISK") == [{"SIZE": "1"}, {"SIZE": "2"}]


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('NAME "x"', "expecting '='"),
        ('NAME = "unterminated', "unterminated quoted value"),
        ("NIC = [ A = 1 B = 2 ]", "expecting ',' or ']'"),
        ("= 3", "expecting an attribute name"),
    ],
)
def test_syntax_errors_say_what_and_where(text, where):
    with pytest.raises(TemplateError) as err:
        parse_template(text)
    assert where in str(err.value)
    assert "line 1" in str(err.value)


def test_xml_templates_are_accepted():
    tmpl = parse_template(
        "<TEMPLATE><GEOLOCATION>1,2</GEOLOCATION><NIC><IP>10.0.0.1</IP></NIC></TEMPLATE>"
    )
    assert tmpl.get("GEOLOCATION") == "1,2"
    assert tmpl.get("NIC") == {"IP": "10.0.0.1"}
    with pytest.raises(TemplateError, match="malformed XML"):
        parse_template("<TEMPLATE><A></TEMPLATE>")


def test_merge_replaces_named_attributes_and_keeps_the_rest():
    base = parse_template('A = "1"\nB = "2"\nNIC = [ IP = "x" ]\nNIC = [ IP = "y" ]\n')
    base.merge(parse_template('B = "3"\nNIC = [ IP = "z" ]\nC = "4"\n'))
    assert base.get("A") == "1"
    assert base.get("B") == "3"
    assert base.get_all("NIC") == [{"IP": "z"}]
    assert base.get("C") == "4"


def test_merge_drops_empty_vectors_like_oned():
    base = parse_template('V = [ K = "1" ]\nA = "1"\n')
    base.merge(parse_template("V = [ ]\n"))
    assert base.get("V") is None
    assert base.get("A") == "1"


def test_xml_is_sorted_by_name_and_escaped():
    tmpl = Template.from_mapping({"ZED": "a<b", "ALPHA": {"Y": "2", "X": "1&"}, "MID": ["1", "2"]})
    assert tmpl.to_xml() == (
        "<TEMPLATE><ALPHA><X>1&amp;</X><Y>2</Y></ALPHA><MID>1</MID><MID>2</MID>"
        "<ZED>a&lt;b</ZED></TEMPLATE>"
    )
    assert Template().to_xml("USER_TEMPLATE") == "<USER_TEMPLATE/>"
