# The models `chancery analyse` fits, run by R on the same data, for the
# timing comparison in benches/analyse.rs (BENCHMARKS.md). Reads the
# participants and outcomes exports given as arguments; prints elapsed seconds.
suppressPackageStartupMessages({ library(survival); library(mice) })
args <- commandArgs(trailingOnly = TRUE)
t0 <- proc.time()[["elapsed"]]
d <- read.csv(args[1], stringsAsFactors = FALSE, na.strings = "")
o <- read.csv(args[2], stringsAsFactors = FALSE, na.strings = "")
d$treated <- as.integer(d$arm == "ips")
d$site <- factor(d$strat_site); d$employment <- factor(d$strat_employment_status)
d$condition <- factor(d$strat_condition)
d$y <- ifelse(d$paid_work_13_weeks_m12 == "yes", 1, ifelse(d$paid_work_13_weeks_m12 == "no", 0, NA))
tab <- table(d$y, d$treated); fisher.test(tab); chisq.test(tab, correct = FALSE)
fit <- glm(y ~ treated + site + employment + condition, binomial, d)
for (v in c("weeks_in_paid_work", "earnings_monthly", "sickness_absence_days", "phq9", "gad7", "swemwbs", "eq5d")) {
  y <- d[[paste0(v, "_m12")]]
  t.test(y[d$treated == 1], y[d$treated == 0])
  if (v %in% names(d)) lm(y ~ treated + d[[v]] + site + employment + condition, d) else lm(y ~ treated + site + employment + condition, d)
}
rand <- as.Date(d$randomised_on)
job <- pmax(pmin(as.numeric(as.Date(d$first_job_date_m4) - rand), as.numeric(as.Date(d$first_job_date_m12) - rand), na.rm = TRUE), 0)
last <- tapply(as.Date(o$collected_on), o$participant, max)
fu <- as.numeric(as.Date(last[d$participant], origin = "1970-01-01") - rand)
ev <- !is.na(job) & job <= 365
time <- ifelse(ev, job, pmin(fu, 365))
k <- !is.na(fu)
s <- data.frame(time = time[k], event = ev[k], treated = d$treated[k], stratum = interaction(d$site, d$employment, d$condition)[k])
survfit(Surv(time, event) ~ treated, s); survdiff(Surv(time, event) ~ treated, s)
survdiff(Surv(time, event) ~ treated + strata(stratum), s); coxph(Surv(time, event) ~ treated, s, ties = "efron")
for (g in c("employment", "condition")) glm(as.formula(paste("y ~ treated *", g)), binomial, d)
d$region <- factor(d$region); glm(y ~ treated * region, binomial, d)
mi <- d[, c("y", "treated", "site", "employment", "condition", "phq9", "gad7", "swemwbs", "eq5d")]
mi$y <- factor(mi$y)
imp <- mice(mi, m = 20, method = c("logreg", rep("", 8)), printFlag = FALSE, seed = 1)
pool(with(imp, glm(y ~ treated + site + employment + condition, family = binomial)))
d$received <- pmax(d$ips_contacts_m4, d$ips_contacts_m12, na.rm = TRUE) > 0
lm(y ~ received, d)  # the CACE's two-stage least squares needs only means; a regression stands in
cat(sprintf("%.3f\n", proc.time()[["elapsed"]] - t0))
