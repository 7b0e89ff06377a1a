# Reference values for the end-to-end analysis test (tests/analysis.rs).
#
# Input: participants.csv and outcomes.csv, the `chancery export --what
# participants` and `--what outcomes` tables of the deterministic demonstration trial
#   chancery demo --participants 1200   (default seed and effect)
# Output: expected.csv, key,value rows at full precision. The Rust test
# rebuilds the same trial, checks its exports are byte-identical to these, runs `chancery analyse`, and compares with these values.
# CI never runs R.  Run from the repository root:
#   Rscript tests/reference/analysis/make_expected.R

suppressPackageStartupMessages(library(survival))
dir <- "tests/reference/analysis"
d <- read.csv(file.path(dir, "participants.csv"), stringsAsFactors = FALSE, na.strings = "")
keys <- character(0); vals <- character(0)
put <- function(key, value) {
  value <- as.numeric(value); stopifnot(length(value) == 1)
  keys <<- c(keys, key); vals <<- c(vals, sprintf("%.17g", value))
}
z975 <- qnorm(0.975)
d$treated <- as.integer(d$arm == "ips")
d$site <- factor(d$strat_site); d$employment <- factor(d$strat_employment_status)
d$condition <- factor(d$strat_condition)
d$y <- ifelse(d$paid_work_13_weeks_m12 == "yes", 1, ifelse(d$paid_work_13_weeks_m12 == "no", 0, NA))

# Primary, unadjusted.
for (a in c(1, 0)) {
  k <- if (a == 1) "ips" else "usual_care"
  put(paste0("primary.", k, ".n"), sum(!is.na(d$y[d$treated == a])))
  put(paste0("primary.", k, ".events"), sum(d$y[d$treated == a], na.rm = TRUE))
}
tab <- table(factor(d$y, levels = c(1, 0)), factor(d$treated, levels = c(1, 0)))
put("primary.fisher.p", fisher.test(tab)$p.value)
put("primary.chisq.p", suppressWarnings(chisq.test(tab, correct = FALSE))$p.value)

# Primary, adjusted for the stratification factors: odds ratio and the
# standardised risk difference (g-computation, delta-method SE).
ctl <- glm.control(epsilon = 1e-14, maxit = 100)
fit <- glm(y ~ treated + site + employment + condition, family = binomial, data = d, control = ctl)
ci <- confint.default(fit)
put("primary.adj.or", exp(coef(fit)["treated"]))
put("primary.adj.or.low", exp(ci["treated", 1])); put("primary.adj.or.high", exp(ci["treated", 2]))
mf <- model.frame(fit)
d1 <- mf; d1$treated <- 1; d0 <- mf; d0$treated <- 0
X1 <- model.matrix(formula(fit), d1); X0 <- model.matrix(formula(fit), d0)
b <- coef(fit); p1 <- plogis(drop(X1 %*% b)); p0 <- plogis(drop(X0 %*% b))
rd <- mean(p1) - mean(p0)
grad <- colMeans(p1 * (1 - p1) * X1) - colMeans(p0 * (1 - p0) * X0)
se <- sqrt(drop(t(grad) %*% vcov(fit) %*% grad))
put("primary.adj.rd", 100 * rd)
put("primary.adj.rd.low", 100 * (rd - z975 * se)); put("primary.adj.rd.high", 100 * (rd + z975 * se))

# PHQ-9 at 12 months: Welch, and ANCOVA on baseline PHQ-9 and the strata.
tt <- t.test(d$phq9_m12[d$treated == 1], d$phq9_m12[d$treated == 0], var.equal = FALSE)
put("phq9.welch", tt$estimate[1] - tt$estimate[2])
put("phq9.welch.low", tt$conf.int[1]); put("phq9.welch.high", tt$conf.int[2])
an <- lm(phq9_m12 ~ treated + phq9 + site + employment + condition, data = d)
put("phq9.ancova", coef(an)["treated"])
put("phq9.ancova.low", confint(an)["treated", 1]); put("phq9.ancova.high", confint(an)["treated", 2])

# Time to first job: days from randomisation to the earliest first_job_date,
# event within 365 days; otherwise censored at the last follow-up (capped at 365).
rand <- as.Date(d$randomised_on)
job <- pmin(as.numeric(as.Date(d$first_job_date_m4) - rand), as.numeric(as.Date(d$first_job_date_m12) - rand), na.rm = TRUE)
job <- pmax(job, 0)
# The last follow-up date comes from the long outcomes export.
o <- read.csv(file.path(dir, "outcomes.csv"), stringsAsFactors = FALSE, na.strings = "")
lastdate <- tapply(as.Date(o$collected_on), o$participant, max)
d$last_fu <- as.numeric(as.Date(lastdate[d$participant], origin = "1970-01-01") - rand)
keep <- !is.na(d$last_fu)
ev <- !is.na(job) & job <= 365
time <- ifelse(ev, job, pmin(d$last_fu, 365))
s <- data.frame(time = time[keep], event = ev[keep], treated = d$treated[keep])
cx <- coxph(Surv(time, event) ~ treated, data = s, ties = "efron")
put("tte.n", nrow(s))
put("tte.hr", exp(coef(cx)["treated"]))
put("tte.hr.low", exp(confint(cx)["treated", 1])); put("tte.hr.high", exp(confint(cx)["treated", 2]))
put("tte.logrank.p", 1 - pchisq(survdiff(Surv(time, event) ~ treated, data = s)$chisq, 1))

# Primary, unadjusted effects: Newcombe hybrid score (method 10, from the two
# Wilson intervals of prop.test), Wald, risk ratio (log Wald) and odds ratio (Woolf).
e1 <- sum(d$y[d$treated == 1], na.rm = TRUE); n1 <- sum(!is.na(d$y[d$treated == 1]))
e0 <- sum(d$y[d$treated == 0], na.rm = TRUE); n0 <- sum(!is.na(d$y[d$treated == 0]))
p1 <- e1 / n1; p0 <- e0 / n0
w1 <- prop.test(e1, n1, correct = FALSE)$conf.int; w0 <- prop.test(e0, n0, correct = FALSE)$conf.int
put("primary.newcombe", 100 * (p1 - p0))
put("primary.newcombe.low", 100 * (p1 - p0 - sqrt((p1 - w1[1])^2 + (w0[2] - p0)^2)))
put("primary.newcombe.high", 100 * (p1 - p0 + sqrt((w1[2] - p1)^2 + (p0 - w0[1])^2)))
sw <- sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
put("primary.wald.low", 100 * (p1 - p0 - z975 * sw)); put("primary.wald.high", 100 * (p1 - p0 + z975 * sw))
lrr <- log(p1 / p0); srr <- sqrt(1 / e1 - 1 / n1 + 1 / e0 - 1 / n0)
put("primary.rr", exp(lrr)); put("primary.rr.low", exp(lrr - z975 * srr)); put("primary.rr.high", exp(lrr + z975 * srr))
lor <- log(e1 * (n0 - e0) / ((n1 - e1) * e0)); sor <- sqrt(1 / e1 + 1 / (n1 - e1) + 1 / e0 + 1 / (n0 - e0))
put("primary.or", exp(lor)); put("primary.or.low", exp(lor - z975 * sor)); put("primary.or.high", exp(lor + z975 * sor))

# Every numeric outcome at 12 months (the take-up count excepted): Welch, and
# the adjusted mean difference (ANCOVA on the baseline value where the outcome
# has one) with the strata; a factor with one level among the complete cases
# drops out, as chancery's design matrix does.
for (v in c("weeks_in_paid_work", "earnings_monthly", "sickness_absence_days", "phq9", "gad7", "swemwbs", "eq5d")) {
  yv <- d[[paste0(v, "_m12")]]
  tt <- t.test(yv[d$treated == 1], yv[d$treated == 0], var.equal = FALSE)
  put(paste0(v, ".welch"), tt$estimate[1] - tt$estimate[2])
  put(paste0(v, ".welch.low"), tt$conf.int[1]); put(paste0(v, ".welch.high"), tt$conf.int[2])
  cc <- data.frame(yv = yv, treated = d$treated, site = d$strat_site, employment = d$strat_employment_status,
                   condition = d$strat_condition)
  terms <- "treated"
  if (v %in% c("phq9", "gad7", "swemwbs", "eq5d")) { cc$base <- d[[v]]; terms <- c(terms, "base") }
  cc <- droplevels(cc[complete.cases(cc), ])
  for (f in c("site", "employment", "condition")) if (length(unique(cc[[f]])) > 1) terms <- c(terms, f)
  an <- lm(as.formula(paste("yv ~", paste(terms, collapse = " + "))), data = cc)
  put(paste0(v, ".adjusted"), coef(an)["treated"])
  put(paste0(v, ".adjusted.low"), confint(an)["treated", 1]); put(paste0(v, ".adjusted.high"), confint(an)["treated", 2])
}

# Time to first job, further: S(t) at 4 and 12 months (the timepoints' target
# days) with Greenwood SE, and the log-rank test stratified by the
# randomisation strata.
s$stratum <- interaction(d$site, d$employment, d$condition, drop = TRUE)[keep]
for (a in c(1, 0)) {
  k <- if (a == 1) "ips" else "usual_care"
  sm <- summary(survfit(Surv(time, event) ~ 1, data = s[s$treated == a, ]), times = c(122, 365), extend = TRUE)
  put(paste0("tte.", k, ".s122"), sm$surv[1]); put(paste0("tte.", k, ".s122.se"), sm$std.err[1])
  put(paste0("tte.", k, ".s365"), sm$surv[2]); put(paste0("tte.", k, ".s365.se"), sm$std.err[2])
}
cxs <- coxph(Surv(time, event) ~ treated + strata(stratum), data = s, ties = "efron",
             control = coxph.control(eps = 1e-11, iter.max = 100))
put("tte.strat.hr", exp(coef(cxs)["treated"]))
put("tte.strat.hr.low", exp(confint(cxs)["treated", 1])); put("tte.strat.hr.high", exp(confint(cxs)["treated", 2]))
put("tte.logrank_strat.p", pchisq(survdiff(Surv(time, event) ~ treated + strata(stratum), data = s)$chisq, 1,
                                  lower.tail = FALSE))

# Subgroups: likelihood-ratio test of treatment x subgroup (glm, binomial).
d$region_f <- factor(d$region)
for (g in c("employment", "condition", "region_f")) {
  g0 <- glm(as.formula(paste("y ~ treated +", g)), binomial, d, control = ctl)
  g1 <- glm(as.formula(paste("y ~ treated *", g)), binomial, d, control = ctl)
  put(paste0("subgroup.", sub("_f$", "", g), ".lr.p"), anova(g0, g1, test = "Chisq")[2, "Pr(>Chi)"])
}

# CACE: receipt is any IPS contact recorded at either follow-up; allocation is
# the instrument; just-identified 2SLS with the HC0 sandwich.
rec <- pmax(d$ips_contacts_m4, d$ips_contacts_m12, na.rm = TRUE) > 0
cc <- !is.na(d$y) & !is.na(rec)
yy <- d$y[cc]; zz <- d$treated[cc]; dd <- as.numeric(rec[cc])
Z <- cbind(1, zz); X <- cbind(1, dd)
A <- solve(crossprod(Z, X)); b <- A %*% crossprod(Z, yy)
e <- drop(yy - X %*% b); V <- A %*% crossprod(Z * e^2, Z) %*% t(A)
put("cace", 100 * b[2]); put("cace.low", 100 * (b[2] - z975 * sqrt(V[2, 2])))
put("cace.high", 100 * (b[2] + z975 * sqrt(V[2, 2])))

header <- sprintf("# generated by tests/reference/analysis/make_expected.R with %s, survival %s",
                  R.version.string, as.character(packageVersion("survival")))
writeLines(c(header, "key,value", paste(keys, vals, sep = ",")), file.path(dir, "expected.csv"))
