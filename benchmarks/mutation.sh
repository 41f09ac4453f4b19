#!/usr/bin/env bash
# Mutation testing of TruePose's core logic with mutmut 3 (`pip install -e ".[test]"`); see docs/testing.md.
#
#   benchmarks/mutation.sh                 # every target below, one after the other
#   benchmarks/mutation.sh parsing pose    # some targets
#   MUTANTS="truepose.pipeline.x_*" benchmarks/mutation.sh pipeline   # only these mutants of a target
#   MUTATION_WORKERS=2 benchmarks/mutation.sh attention                # two test processes (default one)
#
# Each target mutates one source file (or only the named functions of it) and runs, for each mutant, only the
# tests of that target that call the mutated function. It works on a snapshot of the committed HEAD
# (`git archive`) in $MUTATION_DIR/<target> (default /tmp/truepose-mutation), so the working tree is never touched
# and the result belongs to one commit. $MUTATION_WORKERS workers (default 1) at nice 10, single-threaded torch: slow (see docs/testing.md for
# times) and not part of .ci/run. It prints one line per target:
#   <target> <file> killed=K survived=S no_tests=N timeout=T suspicious=U total=M score=P%
# and leaves the surviving mutants' names in $MUTATION_DIR/<target>/survivors.txt (`mutmut show <name>` there
# prints the diff).
set -euo pipefail -o noglob  # mutant-name globs are for mutmut, not the shell

repo=$(git -C "$(dirname "$0")" rev-parse --show-toplevel)
python=${PYTHON:-$repo/.venv/bin/python}
workdir=${MUTATION_DIR:-${TMPDIR:-/tmp}/truepose-mutation}
commit=$(git -C "$repo" rev-parse HEAD)
workers=${MUTATION_WORKERS:-1}  # mutmut --max-children: parallel test processes, one thread each
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

# target -> file to mutate | mutant-name globs (empty: the whole file) | tests (only these run against its mutants).
# pipeline.py is split in its numeric core and its input/output code (loading, saving, `to`, input conversion),
# which is slower to test and less likely to hide a silent wrong result; metrics.py's argparse builders are not
# mutated. tests/test_mutation_targets.py checks that every file, test path and glob below names something that exists.
declare -A FILE SELECT TESTS
FILE[parsing]=src/truepose/conditioning/parsing.py
TESTS[parsing]="tests/conditioning/test_parsing.py tests/conditioning/test_label_maps.py"
FILE[image]=src/truepose/conditioning/image.py
TESTS[image]="tests/conditioning/test_image.py tests/conditioning/test_input_forms.py"
FILE[keypoints]=src/truepose/conditioning/keypoints.py
TESTS[keypoints]="tests/conditioning/test_keypoints.py tests/conditioning/test_retarget.py tests/conditioning/test_skeleton.py
    tests/conditioning/test_pose.py"
FILE[skeleton]=src/truepose/conditioning/skeleton.py
SELECT[skeleton]="truepose.conditioning.skeleton.x_render_skeleton__* truepose.conditioning.skeleton.x_draw_skeleton__*"
TESTS[skeleton]="tests/conditioning/test_skeleton.py tests/conditioning/test_pose.py"
FILE[pose]=src/truepose/conditioning/pose.py
TESTS[pose]="tests/conditioning/test_pose.py tests/conditioning/test_retarget.py tests/conditioning/test_input_forms.py"
FILE[pose_files]=src/truepose/conditioning/pose_files.py
TESTS[pose_files]="tests/conditioning/test_pose_files.py tests/conditioning/test_pose.py tests/conditioning/test_input_forms.py"
FILE[detector]=src/truepose/conditioning/detector.py
TESTS[detector]="tests/conditioning/test_detector.py"
FILE[target_net]=src/truepose/models/target_net.py
TESTS[target_net]="tests/models/test_target_net.py tests/models/test_attention.py tests/models/test_attention_processors.py"
FILE[pose_encoder]=src/truepose/models/pose_encoder.py
TESTS[pose_encoder]="tests/models/test_pose_encoder.py tests/models/test_target_net.py"
FILE[attention]=src/truepose/models/attention.py
TESTS[attention]="tests/models/test_attention.py tests/models/test_attention_processors.py tests/models/test_target_net.py"
FILE[pipeline]=src/truepose/pipeline.py
SELECT[pipeline]="truepose.pipeline.xǁTruePosePipelineǁprepare_latents__* truepose.pipeline.xǁTruePosePipelineǁdecode_latents__*
    truepose.pipeline.xǁTruePosePipelineǁdenoise__* truepose.pipeline.xǁTruePosePipelineǁprepare_extra_step_kwargs__*
    truepose.pipeline.xǁTruePosePipelineǁ__call____* truepose.pipeline.xǁTruePosePipelineǁdo_classifier_free_guidance__*
    truepose.pipeline.xǁTruePosePipelineǁproject_source__*"
TESTS[pipeline]="tests/pipeline/test_generation.py tests/pipeline/test_denoising_loop.py tests/pipeline/test_source_encoding.py
    tests/pipeline/test_precision.py tests/bad_inputs/test_bad_inputs.py tests/training/test_loss.py"
FILE[source_encoding]=src/truepose/source_encoding.py
TESTS[source_encoding]="tests/pipeline/test_source_encoding.py tests/pipeline/test_generation.py
    tests/pipeline/test_precision.py tests/bad_inputs/test_bad_inputs.py tests/training/test_loss.py"
FILE[denoiser]=src/truepose/models/denoiser.py
TESTS[denoiser]="tests/training/test_loss.py tests/test_threads.py"
FILE[pipeline_io]=src/truepose/pipeline.py
SELECT[pipeline_io]="truepose.pipeline.xǁTruePosePipelineǁ__init____* truepose.pipeline.xǁTruePosePipelineǁfrom_*
    truepose.pipeline.xǁTruePosePipelineǁsave_pretrained__* truepose.pipeline.xǁTruePosePipelineǁto__*
    truepose.pipeline.xǁTruePosePipelineǁprepare_pose__*"
TESTS[pipeline_io]="tests/pipeline tests/bad_inputs/test_bad_inputs.py tests/conditioning/test_input_forms.py
    tests/test_animate.py"
FILE[call_inputs]=src/truepose/call_inputs.py
TESTS[call_inputs]="tests/pipeline tests/bad_inputs/test_bad_inputs.py tests/conditioning/test_input_forms.py
    tests/test_animate.py"
FILE[checkpoint]=src/truepose/checkpoint.py
TESTS[checkpoint]="tests/pipeline/test_loading.py tests/bad_inputs/test_bad_checkpoints_and_training.py
    tests/bad_inputs/test_bad_commands.py tests/bad_inputs/test_bad_inputs.py"
FILE[latents]=src/truepose/latents.py
TESTS[latents]="tests/pipeline tests/bad_inputs/test_bad_inputs.py tests/bad_inputs/test_bad_files_and_saves.py"
FILE[conversion]=src/truepose/conversion.py
TESTS[conversion]="tests/pipeline/test_from_stable_diffusion.py"
FILE[train]=src/truepose/train.py
SELECT[train]="truepose.train.x_training_loss__*"
TESTS[train]="tests/training/test_loss.py"
FILE[scores]=src/truepose/evaluation/scores.py
TESTS[scores]="tests/evaluation/test_scores.py tests/evaluation/test_regions.py tests/bad_inputs/test_bad_inputs.py"
FILE[fid]=src/truepose/evaluation/fid.py
TESTS[fid]="tests/evaluation/test_fid.py tests/evaluation/test_metrics.py"
FILE[images]=src/truepose/evaluation/images.py
TESTS[images]="tests/evaluation/test_images.py tests/evaluation/test_scores.py tests/evaluation/test_metrics.py
    tests/evaluation/test_regions.py tests/bad_inputs/test_bad_inputs.py"
FILE[weights]=src/truepose/evaluation/weights.py
TESTS[weights]="tests/evaluation/test_weights.py tests/evaluation/test_metrics.py"
FILE[report]=src/truepose/evaluation/report.py
TESTS[report]="tests/evaluation/test_report.py tests/evaluation/test_metrics.py tests/evaluation/test_regions.py"
FILE[progress]=src/truepose/evaluation/progress.py
TESTS[progress]="tests/evaluation/test_report.py"
FILE[metrics]=src/truepose/evaluation/metrics.py
SELECT[metrics]="truepose.evaluation.metrics.x__default_device__* truepose.evaluation.metrics.x_compute_metrics__*
    truepose.evaluation.metrics.x__score_pairs__* truepose.evaluation.metrics.x__real_set_statistics__*
    truepose.evaluation.metrics.x_scoring_kwargs__* truepose.evaluation.metrics.x_main__*"
TESTS[metrics]="tests/evaluation/test_metrics.py tests/evaluation/test_regions.py tests/bad_inputs/test_bad_inputs.py"
ALL=(parsing image keypoints skeleton target_net train pose pipeline source_encoding denoiser pose_encoder attention pose_files
    detector pipeline_io
    call_inputs checkpoint latents conversion scores fid images weights report progress metrics)

targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${ALL[@]}")
echo "mutmut $("$python" -m mutmut --version | awk '{print $NF}'), commit $commit, $(date -u +%Y-%m-%dT%H:%MZ)"
for target in "${targets[@]}"; do
    if [ -z "${FILE[$target]:-}" ]; then
        echo "unknown target $target; known: ${ALL[*]}" >&2
        exit 2
    fi
    dir=$workdir/$target
    rm -rf "$dir"
    mkdir -p "$dir"
    git -C "$repo" archive "$commit" | tar -x -C "$dir"
    {
        echo "[mutmut]"
        echo "source_paths = src/"
        echo "only_mutate = ${FILE[$target]}"
        echo "pytest_add_cli_args_test_selection ="
        for t in ${TESTS[$target]}; do echo "    $t"; done
        echo "also_copy ="  # tests that read the docs (docs/inputs.md's batching table)
        echo "    docs"
        echo "pytest_add_cli_args ="
        echo "    -p"
        echo "    no:cacheprovider"
    } >"$dir/setup.cfg"
    sed -i '/^\[tool\.mutmut\]/,/^\[/{/^\[tool\.mutmut\]/d}' "$dir/pyproject.toml"
    # mutmut 3 skips decorated functions (`@torch.no_grad()` `__call__`, properties, context managers): re-apply
    # their decorators after the definition in the snapshot so that they are mutated too.
    (cd "$dir" && "$python" benchmarks/mutation_undecorate.py "${FILE[$target]}")
    select=${MUTANTS:-${SELECT[$target]:-}}
    start=$(date +%s)
    # shellcheck disable=SC2086
    (cd "$dir" && nice -n 10 "$python" -m mutmut run --max-children "$workers" $select >run.log 2>&1) || true
    (cd "$dir" && "$python" -m mutmut results --all true >results.txt 2>&1) || true
    "$python" - "$dir/results.txt" "$target" "${FILE[$target]}" "$(($(date +%s) - start))" "$select" <<'EOF'
import collections, fnmatch, re, sys

path, target, file, seconds, select = sys.argv[1:]
patterns = select.split()
counts = collections.Counter()
survivors = []
for line in open(path):
    match = re.match(r"\s*(\S+__mutmut_\d+): (.+)", line)
    if match and (not patterns or any(fnmatch.fnmatchcase(match.group(1), p) for p in patterns)):
        status = match.group(2).strip()
        counts[status] += 1
        if status != "killed":
            survivors.append(f"{match.group(1)}: {status}")
total = sum(counts.values())
killed = counts["killed"] + counts["timeout"]
score = 100 * killed / total if total else float("nan")
with open(path.replace("results.txt", "survivors.txt"), "w") as out:
    out.write("\n".join(survivors) + "\n")
print(
    f"{target} {file}{' (selected functions)' if patterns else ''} killed={counts['killed']} survived={counts['survived']} no_tests={counts['no tests']} "
    f"timeout={counts['timeout']} suspicious={counts['suspicious']} not_checked={counts['not checked']} total={total} score={score:.1f}% "
    f"({int(seconds) // 60} min)"
)
EOF
done
