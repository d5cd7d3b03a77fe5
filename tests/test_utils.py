"""utils: the one entry-point wrapper, output-folder checks and file permissions."""
import os
import stat

import pytest

import utils


def test_files_are_written_with_the_permissions_open_gives(tmp_path):
    old = os.umask(0o022)
    try:
        utils.save_text(str(tmp_path / "a.txt"), "x")
        with open(tmp_path / "b.txt", "w") as f:
            f.write("x")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o644


def test_unwritable_output_folder_is_refused_naming_option_and_folder(unwritable_dir):
    target = os.path.join(unwritable_dir, "run", "x")
    with pytest.raises(utils.UserError, match=r"--out .*run/x.* cannot be written"):
        utils.check_folder_option(target, "--out")


def test_writable_new_folder_is_accepted_and_not_created(tmp_path):
    target = tmp_path / "new" / "deeper"
    utils.check_folder_option(str(target), "--out")
    assert not (tmp_path / "new").exists()
    assert os.listdir(tmp_path) == []


def test_entry_point_wrapper_one_line_errors(capsys):
    def user_error(argv):
        raise utils.UserError("bad --thing")

    def interrupted(argv):
        raise KeyboardInterrupt

    def denied(argv):
        raise PermissionError(13, "Permission denied", "/x/out.json")

    for main, code, line in ((user_error, 2, "error: bad --thing"), (interrupted, 130, "interrupted"),
                             (denied, 2, "error: cannot write /x/out.json: Permission denied")):
        with pytest.raises(SystemExit) as e:
            utils.run_entry_point(main, [])
        assert e.value.code == code
        assert capsys.readouterr().err.strip() == line
