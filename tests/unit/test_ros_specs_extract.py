"""``deploy/ros_specs/extract.py`` reads Alibaba's ROS CDK packages strictly: a line it does not understand stops it.

A tiny fake package, laid out as the generator lays out ``lib/<service>.generated.js`` and ``.jsii``, is written to
``tmp_path``: read as published it gives the spec the template test relies on; with an unknown validator line, a
dropped property or a required flag the three views disagree on, it is refused, naming the function and the line.
The pinned wheel hashes refuse any other wheel. ``extract.py --check`` needs PyPI and is not run here.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from deploy.ros_specs import extract

NPM = "@alicloud/ros-cdk-fc3"
VALIDATOR = "RosLayerVersionPropsValidator"
GENERATED_JS = """\
'use strict';
function RosLayerVersionPropsValidator(properties) {
    if (!ros.canInspect(properties)) {
        return ros.VALIDATION_SUCCESS;
    }
    const errors = new ros.ValidationResults();
    errors.collect(ros.propertyValidator('layerName', ros.requiredValidator)(properties.layerName));
    errors.collect(ros.propertyValidator('layerName', ros.validateString)(properties.layerName));
    if (properties.acl && (typeof properties.acl) !== 'object') {
        errors.collect(ros.propertyValidator('acl', ros.validateAllowedValues)({
            data: properties.acl,
            allowedValues: ["1", "0"],
        }));
    }
    errors.collect(ros.propertyValidator('acl', ros.validateString)(properties.acl));
    if (properties.compatibleRuntime && (Array.isArray(properties.compatibleRuntime) || (typeof properties.compatibleRuntime) === 'string')) {
        errors.collect(ros.propertyValidator('compatibleRuntime', ros.validateLength)({
            data: properties.compatibleRuntime.length,
            min: 0,
            max: 20,
        }));
    }
    errors.collect(ros.propertyValidator('compatibleRuntime', ros.listValidator(ros.validateString))(properties.compatibleRuntime));
    return errors.wrap('supplied properties not correct for "RosLayerVersionProps"');
}
function rosLayerVersionPropsToRosTemplate(properties, enableResourcePropertyConstraint) {
    if (!ros.canInspect(properties)) {
        return properties;
    }
    if (enableResourcePropertyConstraint) {
        RosLayerVersionPropsValidator(properties).assertSuccess();
    }
    return {
        'LayerName': ros.stringToRosTemplate(properties.layerName),
        'Acl': ros.stringToRosTemplate(properties.acl),
        'CompatibleRuntime': ros.listMapper(ros.stringToRosTemplate)(properties.compatibleRuntime),
    };
}
class RosLayerVersion extends ros.RosResource {
    constructor(scope, id, props, enableResourcePropertyConstraint) {
        super(scope, id, { type: RosLayerVersion.ROS_RESOURCE_TYPE_NAME, properties: props });
        this.attrLayerVersionArn = this.getAtt('LayerVersionArn');
        this.attrVersion = this.getAtt('Version');
    }
}
RosLayerVersion.ROS_RESOURCE_TYPE_NAME = "ALIYUN::FC3::LayerVersion";
"""  # noqa: E501 - the generator's own long lines
ASSEMBLY: dict[str, Any] = {
    "name": NPM,
    "version": "1.15.0",
    "fingerprint": "fake",
    "types": {
        f"{NPM}.RosLayerVersion": {
            "kind": "class",
            "docs": {
                "custom": {"see": "https://www.alibabacloud.com/help/ros/developer-reference/aliyun-fc3-layerversion"}
            },
        },
        f"{NPM}.RosLayerVersionProps": {
            "kind": "interface",
            "properties": [
                {"name": "layerName", "docs": {"custom": {"Property": "layerName: Name of the layer."}}},
                {"name": "acl", "optional": True, "docs": {"custom": {"Property": "acl: undefined"}}},
                {"name": "compatibleRuntime", "optional": True, "docs": {}},
            ],
        },
    },
}


def write_package(root: Path, javascript: str = GENERATED_JS, assembly: dict[str, Any] = ASSEMBLY) -> Path:
    """The package as npm's tarball holds it: ``package/package.json``, ``package/.jsii``, the generated code."""
    (root / "package" / "lib").mkdir(parents=True)
    (root / "package" / "package.json").write_text(json.dumps({"name": NPM, "version": "1.15.0"}), encoding="utf-8")
    (root / "package" / ".jsii").write_text(json.dumps(assembly), encoding="utf-8")
    (root / "package" / "lib" / "fc3.generated.js").write_text(javascript, encoding="utf-8")
    return root / "package"


def read_package(folder: Path) -> extract.Package:
    return extract.Package(
        npm_name=NPM,
        version="1.15.0",
        generated_js=(folder / "lib" / "fc3.generated.js").read_text(encoding="utf-8"),
        assembly=json.loads((folder / ".jsii").read_text(encoding="utf-8")),
        tarball_integrity="sha512-fake",
        wheel="ros_cdk_fc3-1.15.0-py3-none-any.whl",
        wheel_sha256="0" * 64,
    )


def test_a_package_laid_out_as_published_gives_its_spec(tmp_path: Path) -> None:
    spec = extract.resources(read_package(write_package(tmp_path)))
    assert spec == {
        "ALIYUN::FC3::LayerVersion": {
            "package": NPM,
            "documentation": "https://www.alibabacloud.com/help/ros/developer-reference/aliyun-fc3-layerversion",
            "attributes": ["LayerVersionArn", "Version"],
            "properties": {
                "Acl": {"required": False, "type": "string", "allowed_values": ["1", "0"]},
                "CompatibleRuntime": {
                    "required": False,
                    "type": "list",
                    "items": {"type": "string"},
                    "min_length": 0,
                    "max_length": 20,
                },
                "LayerName": {"required": True, "type": "string", "description": "Name of the layer."},
            },
        }
    }


@pytest.mark.parametrize(
    ("original", "changed", "refusal"),
    [
        pytest.param(  # a check the reader does not know: an argument line it cannot place
            '            allowedValues: ["1", "0"],\n',
            '            allowedValues: ["1", "0"],\n            caseInsensitive: true,\n',
            f"{VALIDATOR}: validator line not understood: caseInsensitive: true,",
            id="unknown-check-argument",
        ),
        pytest.param(  # a guard of a shape the reader has never seen
            "    if (properties.acl && (typeof properties.acl) !== 'object') {\n",
            "    if (properties.acl && properties.acl.startsWith('x')) {\n",
            f"{VALIDATOR}: validator line not understood: if (properties.acl && properties.acl.startsWith('x')) {{",
            id="unknown-guard",
        ),
        pytest.param(  # the renderer dropped a property the validator and jsii still have
            "        'Acl': ros.stringToRosTemplate(properties.acl),\n",
            "",
            "renderer ['compatibleRuntime', 'layerName'], validator ['acl', 'compatibleRuntime', 'layerName']",
            id="dropped-property",
        ),
        pytest.param(  # rendered as a number, validated as a string
            "'Acl': ros.stringToRosTemplate(properties.acl)",
            "'Acl': ros.numberToRosTemplate(properties.acl)",
            "acl: rendered as number but validated by ros.validateString",
            id="type-disagreement",
        ),
    ],
)
def test_a_line_the_reader_does_not_understand_stops_it(
    tmp_path: Path, original: str, changed: str, refusal: str
) -> None:
    assert GENERATED_JS.count(original) == 1
    folder = write_package(tmp_path, GENERATED_JS.replace(original, changed))
    with pytest.raises(extract.ExtractError) as raised:
        extract.resources(read_package(folder))
    assert refusal in str(raised.value)


def test_a_required_flag_the_jsii_interface_disagrees_with_is_refused(tmp_path: Path) -> None:
    assembly = json.loads(json.dumps(ASSEMBLY))
    assembly["types"][f"{NPM}.RosLayerVersionProps"]["properties"][0]["optional"] = True
    with pytest.raises(extract.ExtractError, match="layerName required=True but jsii optional disagrees"):
        extract.resources(read_package(write_package(tmp_path, assembly=assembly)))


def test_a_wheel_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    folder = write_package(tmp_path / "npm")
    tarball = io.BytesIO()
    with tarfile.open(fileobj=tarball, mode="w:gz") as archive:
        archive.add(folder, arcname="package")
    wheel = tmp_path / "ros_cdk_fc3-1.15.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("ros_cdk_fc3/_jsii/ros-cdk-fc3@1.15.0.jsii.tgz", tarball.getvalue())
    with pytest.raises(extract.ExtractError, match="is not the pinned one; update WHEELS on purpose"):
        extract.read_wheel(wheel)
