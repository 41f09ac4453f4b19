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
# pose.py and pipeline.py are split in their numeric core and their input/output code (readers, detector, loading,
# argument checks), which is slower to test and less likely to hide a silent wrong result; so is metrics.py (the
# scores vs file reading, weight loading, caching, report formatting; its argparse builders are not mutated).
declare -A FILE SELECT TESTS
FILE[parsing]=src/truepose/conditioning/parsing.py
TESTS[parsing]="tests/conditioning/test_parsing.py tests/conditioning/test_correctness_parsing.py"
FILE[pose]=src/truepose/conditioning/pose.py
SELECT[pose]="truepose.conditioning.pose.x_as_keypoints__* truepose.conditioning.pose.x__present__*
    truepose.conditioning.pose.x__check_in_frame__* truepose.conditioning.pose.x__check_size__*
    truepose.conditioning.pose.x__render__* truepose.conditioning.pose.x_draw_skeleton__*
    truepose.conditioning.pose.x_retarget_keypoints__* truepose.conditioning.pose.x_rescale_keypoints__*
    truepose.conditioning.pose.x_prepare_pose_image__*"
TESTS[pose]="tests/conditioning/test_pose.py tests/conditioning/test_correctness_pose.py"
FILE[pose_io]=src/truepose/conditioning/pose.py
SELECT[pose_io]="truepose.conditioning.pose.x__is_* truepose.conditioning.pose.x_as_pose_batch__*
    truepose.conditioning.pose.x_parse_deepfashion_keypoints__* truepose.conditioning.pose.x_read_*
    truepose.conditioning.pose.x__looks_like_local_path__* truepose.conditioning.pose.x__resolve_files__*
    truepose.conditioning.pose.x__mm_stack_available__* truepose.conditioning.pose.xǁPoseDetectorǁ*"
TESTS[pose_io]="tests/conditioning/test_pose.py tests/conditioning/test_pose_io.py tests/conditioning/test_input_forms.py"
FILE[image]=src/truepose/conditioning/image.py
TESTS[image]="tests/conditioning/test_image.py tests/conditioning/test_input_forms.py"
FILE[target_net]=src/truepose/models/target_net.py
TESTS[target_net]="tests/models/test_correctness_target_net.py tests/models/test_attention.py"
FILE[pose_encoder]=src/truepose/models/pose_encoder.py
TESTS[pose_encoder]="tests/models/test_correctness_target_net.py"
FILE[attention]=src/truepose/models/attention.py
TESTS[attention]="tests/models/test_attention.py tests/models/test_correctness_attention.py tests/models/test_correctness_target_net.py"
FILE[pipeline]=src/truepose/pipeline.py
SELECT[pipeline]="truepose.pipeline.xǁTruePosePipelineǁencode_parsing__* truepose.pipeline.xǁTruePosePipelineǁencode_source_latents__*
    truepose.pipeline.xǁTruePosePipelineǁencode_source__* truepose.pipeline.xǁTruePosePipelineǁprepare_latents__*
    truepose.pipeline.xǁTruePosePipelineǁdecode_latents__* truepose.pipeline.xǁTruePosePipelineǁdenoise__*
    truepose.pipeline.xǁTruePosePipelineǁprepare_extra_step_kwargs__* truepose.pipeline.xǁTruePosePipelineǁ__call____*
    truepose.pipeline.xǁTruePosePipelineǁdo_classifier_free_guidance__* truepose.pipeline.xǁTruePosePipelineǁproject_source__*"
TESTS[pipeline]="tests/test_correctness_pipeline.py tests/test_pipeline.py tests/bad_inputs/test_bad_inputs.py
    tests/test_correctness_train.py"
FILE[pipeline_io]=src/truepose/pipeline.py
SELECT[pipeline_io]="truepose.pipeline.x_* truepose.pipeline.xǁTruePosePipelineǁ__init____*
    truepose.pipeline.xǁTruePosePipelineǁfrom_* truepose.pipeline.xǁTruePosePipelineǁsave_pretrained__*
    truepose.pipeline.xǁTruePosePipelineǁto__* truepose.pipeline.xǁTruePosePipelineǁcheck_inputs__*
    truepose.pipeline.xǁTruePosePipelineǁencode_image__* truepose.pipeline.xǁTruePosePipelineǁparse_sources__*
    truepose.pipeline.xǁTruePosePipelineǁprepare_pose__*
    truepose.pipeline.xǁTruePosePipelineǁcanonical_inputs__*"
TESTS[pipeline_io]="tests/test_correctness_pipeline.py tests/test_pipeline.py tests/bad_inputs/test_bad_inputs.py
    tests/test_conventions.py tests/test_from_stable_diffusion.py tests/conditioning/test_input_forms.py
    tests/test_animate.py"
FILE[train]=src/truepose/train.py
SELECT[train]="truepose.train.x_training_loss__*"
TESTS[train]="tests/test_correctness_train.py"
FILE[metrics]=src/truepose/evaluation/metrics.py
SELECT[metrics]="truepose.evaluation.metrics.x_resize_to_uint8__* truepose.evaluation.metrics.x__array_to_uint8__*
    truepose.evaluation.metrics.x__to_float__*
    truepose.evaluation.metrics.x__check_pair__* truepose.evaluation.metrics.x_ssim__*
    truepose.evaluation.metrics.x_ssim_256__* truepose.evaluation.metrics.x_psnr__*
    truepose.evaluation.metrics.x_lpips_distance__* truepose.evaluation.metrics.xǁInceptionFeatureExtractorǁ*
    truepose.evaluation.metrics.xǁPytorchFIDFeatureExtractorǁ* truepose.evaluation.metrics.x_min_fid_images__*
    truepose.evaluation.metrics.x_check_fid_image_counts__* truepose.evaluation.metrics.xǁRunningStatisticsǁ*
    truepose.evaluation.metrics.x_feature_statistics__* truepose.evaluation.metrics.x_frechet_distance__*"
TESTS[metrics]="tests/evaluation/test_evaluation_metrics.py"
FILE[metrics_io]=src/truepose/evaluation/metrics.py
SELECT[metrics_io]="truepose.evaluation.metrics.x_parse_size__* truepose.evaluation.metrics.x_list_image_files__*
    truepose.evaluation.metrics.x_load_* truepose.evaluation.metrics.x_pair_image_folders__*
    truepose.evaluation.metrics.xǁ_* truepose.evaluation.metrics.x_resolve_weights_file__*
    truepose.evaluation.metrics.x__load_state_dict__* truepose.evaluation.metrics.x_check_fid_backbone__*
    truepose.evaluation.metrics.x_check_weight_files__* truepose.evaluation.metrics.x_folder_statistics__*
    truepose.evaluation.metrics.x_real_statistics__* truepose.evaluation.metrics.x__real_statistics_key__*
    truepose.evaluation.metrics.x_target_parsing_files__* truepose.evaluation.metrics.x_compute_metrics__*
    truepose.evaluation.metrics.x__format_* truepose.evaluation.metrics.x_format_markdown__*
    truepose.evaluation.metrics.x_write_results__* truepose.evaluation.metrics.x_scoring_kwargs__*
    truepose.evaluation.metrics.x__loader__* truepose.evaluation.metrics.x__progress__*
    truepose.evaluation.metrics.x__default_device__* truepose.evaluation.metrics.x_default_cache_dir__*
    truepose.evaluation.metrics.x_main__*"
TESTS[metrics_io]="tests/evaluation/test_evaluation_metrics.py tests/evaluation/test_metrics_io.py tests/evaluation/test_evaluation_regions.py
    tests/bad_inputs/test_bad_inputs.py"
ALL=(parsing image target_net train pose pipeline pose_encoder attention pose_io pipeline_io metrics metrics_io)

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
