"""quant/run: the options of a calibration run, checked where they are built."""
import json

import pytest

from qvggt_deploy.errors import QvggtError
from qvggt_deploy.quant.run import (CalibData, CalibrateOptions, SensitivityOptions, parse_precisions,
                                    read_sensitivity, work_folder)


def test_calibration_data_counts():
    assert CalibData().count == 8 and CalibData(synthetic=3).count == 3
    assert CalibData(calib="photos", synthetic=3, calib_batches=5).count == 5


def test_options_are_checked_where_they_are_built():
    assert parse_precisions(" fp16, w4a16 ,", "--mp-options") == ("fp16", "w4a16")
    with pytest.raises(QvggtError, match="--mp-options is empty"):
        parse_precisions(" , ", "--mp-options")
    with pytest.raises(QvggtError):
        CalibrateOptions(mp_options=("fp16", "w2a16"))
    with pytest.raises(QvggtError, match="one budget"):
        CalibrateOptions(avg_bits=5, max_weight_mb=1)
    with pytest.raises(QvggtError, match="fp32 is the reference"):
        SensitivityOptions(precisions=("fp32",))
    assert CalibrateOptions(avg_bits=4).mixed and not CalibrateOptions().mixed
    assert str(work_folder("out/rec")) == "out/rec.work"


def test_a_sensitivity_table_is_read_from_its_file_or_its_folder(tmp_path):
    (tmp_path / "sensitivity.json").write_text(json.dumps({"group": 32}))
    assert read_sensitivity(tmp_path) == read_sensitivity(tmp_path / "sensitivity.json") == {"group": 32}
    with pytest.raises(QvggtError, match="unreadable sensitivity file"):
        read_sensitivity(tmp_path / "nope.json")
