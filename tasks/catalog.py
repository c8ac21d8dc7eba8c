"""Every registered task: the paper's clinical tasks (your own files) and the embedded defaults.

Label sets follow the paper's files (§3): `hospital_expire_flag` 0/1, `los_label` 0-3 (<=3 days,
3-7, 7-14, >14), ICD9-Triage `label` 0-6, i2b2-RE `labels` 0-8. The best epoch is picked by
validation macro-F1 for classification and entity F1 for NER, as the paper's code did; `primary`
is the metric its tables report.
"""

from __future__ import annotations

from functools import partial

from tasks import data_conll, data_csv, defaults
from tasks.task import CLS_METRICS, NER_METRICS, SEQ_CLS, TOKEN_CLS, Task, register


def _digits(n: int) -> tuple[str, ...]:
    return tuple(str(i) for i in range(n))


def _csv(layout, labels, data_dir, seed):
    return data_csv.load_csv_task(data_dir, layout, labels)


def _re(labels, data_dir, seed):
    return data_csv.load_i2b2_re(data_dir, labels, seed)


def _ner(types, data_dir, seed, names=data_conll.CONLL_NAMES):
    return data_conll.load_conll_task(data_dir, types, names)


def _generic_csv(data_dir, seed, text_column="text", label_column="label", id_column=None):
    return data_csv.load_generic_csv(data_dir, text_column, label_column, id_column)


def _cls(name, labels, loader, description, primary="roc_auc", needs_data_dir=True):
    return register(
        Task(
            name=name,
            type=SEQ_CLS,
            labels=labels,
            metrics=CLS_METRICS,
            primary=primary,
            select_by="f1_macro",
            loader=loader,
            description=description,
            needs_data_dir=needs_data_dir,
        )
    )


def _ner_task(name, types, description, names=data_conll.CONLL_NAMES):
    return register(
        Task(
            name=name,
            type=TOKEN_CLS,
            labels=(),
            metrics=NER_METRICS,
            primary="entity_f1",
            select_by="entity_f1",
            loader=partial(_ner, types, names=names),
            description=description,
            entity_types=types,
        )
    )


_cls(
    "mimic-mp",
    _digits(2),
    partial(_csv, data_csv.MIMIC_MP, _digits(2)),
    "MIMIC-III in-hospital mortality: id,text,hospital_expire_flag in train.csv/valid.csv/test.csv "
    "or MP_IN_adm_{train,val,test}.csv",
)
_cls(
    "mimic-los",
    _digits(4),
    partial(_csv, data_csv.MIMIC_LOS, _digits(4)),
    "MIMIC-III length of stay, 4 classes: id,text,los_label in train.csv/valid.csv/test.csv "
    "or LOS_WEEKS_adm_{train,val,test}.csv",
)
_cls(
    "icd9-triage",
    _digits(7),
    partial(_csv, data_csv.ICD9_TRIAGE, _digits(7)),
    "ICD9-Triage, 7 triage teams: text,triage-category,label in train.csv/valid.csv/test.csv",
)
_cls(
    "i2b2-re",
    _digits(9),
    partial(_re, _digits(9)),
    "i2b2-2010 relations, 9 classes: sentence,labels in train.csv/valid.csv (or .jsonl), or a "
    "datasets save_to_disk folder with train/validation splits; valid is split 50/50 into validation "
    "and test by --seed",
)
_ner_task(
    "i2b2-2010",
    ("problem", "test", "treatment"),
    "i2b2-2010 concepts NER: token label lines in {train,dev,test}.txt.conll",
)
_ner_task(
    "i2b2-2012",
    ("PROBLEM", "TEST", "TREATMENT", "CLINICAL_DEPT", "EVIDENTIAL", "OCCURRENCE"),
    "i2b2-2012 temporal events NER: token label lines in {train,dev,test}.txt.conll",
)
_ner_task(
    "i2b2-2014",
    (),
    "i2b2-2014 de-identification (PHI types) NER: token label lines in {train,dev,test}.txt.conll",
)
register(
    Task(
        name="csv",
        type=SEQ_CLS,
        labels=(),
        metrics=CLS_METRICS,
        primary="roc_auc",
        select_by="f1_macro",
        loader=_generic_csv,
        description="any text classification: train.csv, valid.csv (or val.csv, dev.csv), test.csv with "
        "--text-column and --label-column (default text, label); the labels are the values in train.csv",
        options=("text_column", "label_column", "id_column"),
    )
)
_ner_task(
    "conll",
    (),
    "any NER in BIO tags: token tag lines in {train,dev,test}.txt.conll or {train,dev,test}.conll",
    names=data_conll.GENERIC_NAMES,
)
_cls(
    "rotten-tomatoes",
    defaults.RT_LABELS,
    defaults.load_rotten_tomatoes,
    "embedded default: 12.8k Rotten Tomatoes critic snippets, fresh/rotten",
    needs_data_dir=False,
)
_cls(
    "drug-reviews",
    defaults.DRUG_LABELS,
    defaults.load_drug_reviews,
    "embedded default: 979 Drugs.com reviews, rating-derived negative/neutral/positive",
    needs_data_dir=False,
)
_cls(
    "drug-reviews-condition",
    defaults.CONDITION_LABELS,
    defaults.load_drug_conditions,
    "embedded default: Drugs.com reviews labelled by condition (11 conditions with >= 15 reviews)",
    needs_data_dir=False,
)
